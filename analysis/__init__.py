"""Run records -> pandas tables and plots. Reads only the files of DESIGN.md section 5, never model code."""
