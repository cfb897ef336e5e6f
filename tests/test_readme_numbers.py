"""The README's numbers are the results file's (benchmarks/readme_numbers.json, made by
`python -m benchmarks.readme`), and the cheap commands reproduce the file's numbers exactly at one thread.
Timings (train time, fused speed-up) move with machine load: the README quotes them as measured at a
commit, and nothing here compares them."""
import json

import pytest

from benchmarks.readme import ENTRIES, RESULTS, TIMING_KEYS, measure
from growth.engine.env import apply_threads, device_name, reproducibility
from growth.errors import ConfigError
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
FLAT = " ".join(README.split())  # line breaks and runs of spaces do not matter, the numbers do
FILE = json.loads(RESULTS.read_text())
E = {name: entry["numbers"] for name, entry in FILE["entries"].items()}


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def fragments() -> list[tuple[str, str]]:
    """(entry, text) pairs: each text is a number as the README writes it, with its context."""
    d, f, r = E["default"], E["fixed_111"], E["reducenet"]
    out = [("default", line) for line in (d["trajectory"][0], d["trajectory"][1], d["trajectory"][-1])]
    out += [("default", f"fused model: {d['deploy_params']:,} params, {d['macs'] / 1e6:.2f} M MACs per sample (...); "
                        f"training cost {d['train_macs_total'] / 1e9:.1f} GMACs"),
            ("default", f"AdaGrow val {d['final_val_acc']:.4f} / test {d['test_acc']:.4f}"),
            ("fixed_111", f"costs {f['train_macs_total'] / 1e9:.1f} GMACs"),
            ("fixed_111", f"fixed 1-1-1 val {f['final_val_acc']:.4f} / test {f['test_acc']:.4f}")]
    g, o = E["fixed_210"], E["default_old_width_rule"]
    out += [("fixed_210", f"costs {g['train_macs_total'] / 1e9:.1f} GMACs"),
            ("fixed_210", f"fixed 2-1-0 val {g['final_val_acc']:.4f} / test {g['test_acc']:.4f}"),
            ("default_old_width_rule", f"final arch {o['arch']}, {o['deploy_params']:,} params deployed, training cost "
                                       f"{o['train_macs_total'] / 1e9:.1f} GMACs, val {o['final_val_acc']:.4f} / "
                                       f"test {o['test_acc']:.4f}")]
    v, s = E["vit"], E["vit_sgd"]
    out += [("vit", f"grows d2h6 -> {v['arch']} and reaches val {v['final_val_acc']:.3f} / test {v['test_acc']:.3f}"),
            ("vit_sgd", f"stays at chance on digits (val {s['final_val_acc']:.3f} after 20 epochs)")]
    out += [("reducenet", f"teacher (10 epochs) val {pct(r['teacher_val_acc'])} / test {pct(r['teacher_test_acc'])}, "
                          f"{r['teacher_params']:,} params, {r['teacher_macs'] / 1e6:.2f} M MACs"),
            ("reducenet", f"student (10 more epochs, KD) val {pct(r['student_val_acc'])} / test "
                          f"{pct(r['student_test_acc'])}, {r['student_params']:,} params, folded "
                          f"{r['student_deploy_params']:,} params and {r['student_macs'] / 1e6:.2f} M"),
            ("reducenet", f"(max |folded - unfolded| {r['deploy_max_abs_diff']:.1e})".replace("e-0", "e-")),
            ("reducenet_scratch", f"(`method=fixed model.scaler=0`): test {pct(E['reducenet_scratch']['test_acc'])}")]
    a = E["sws_aux"]
    out += [("sws_aux", f"val {100 * a['teacher_val_acc']:.1f} %; aux"),
            ("sws_aux", f"20 epochs of pure KD: val {100 * a['final_val_acc']:.1f} % / "
                        f"test {100 * a['test_acc']:.1f} %, {a['params']:,} params, "
                        f"learngene {a['learngene_params']:,}"),
            ("sws_aux", f"the learngene cost {a['learngene_cost_macs'] / 1e9:.1f} GMACs (aux "
                        f"{a['aux_train_macs'] / 1e9:.1f} + teacher forwards {a['kd_teacher_macs'] / 1e9:.1f}; "
                        f"the teacher's own training, {a['teacher_train_macs'] / 1e9:.1f}, apart)")]
    table = E["sws_table"]
    for depth, row in table.items():
        accs = [" / ".join(f"{100 * x:.1f}" for x in row[k]) for k in ("descendant_val_acc", "scratch_val_acc")]
        out.append(("sws_table", f"| {depth} | {row['params']:,} | {accs[0]} | {accs[1]} | "
                                 f"{row['storage_ratio']:.2f} | {row['cost_ratio']:.1f} | "
                                 f"{row['cost_ratio_amortised']:.1f} |"))
    row = table["3"]
    out.append(("sws_table", f"Storing the three depths takes {row['family_params']:,} params, "
                             f"{row['family_storage_ratio']:.2f}x the learngene"))
    return out


def test_the_file_covers_every_entry_at_the_stated_thread_count():
    assert set(FILE["entries"]) == set(ENTRIES)
    assert FILE["threads"] == 1
    assert all(e["command"].count("trainer.threads=1") == 1 for e in FILE["entries"].values() if "command" in e)


@pytest.mark.parametrize("entry,text", fragments(), ids=lambda x: x[:60])
def test_the_readme_quotes_the_files_number(entry, text):
    where = f"benchmarks/readme_numbers.json, {entry}"
    assert " ".join(text.split()) in FLAT, f"README.md should say (from {where}):\n{text}"


def test_the_readme_says_where_and_how_its_numbers_were_measured():
    assert "python -m benchmarks.readme" in README
    for entry in FILE["entries"].values():
        assert entry["commit"][:7] in README  # "measured at commit X"
    for sweep in FILE["sweeps"].values():
        assert sweep["command"].split(" && ")[0] in README


def test_threads_and_determinism_are_checked_and_recorded():
    for key, bad in (("threads", 0), ("threads", "2"), ("threads", True), ("deterministic", "yes")):
        with pytest.raises(ConfigError, match=f"trainer.{key}="):
            apply_threads({"trainer": {key: bad}})
    rec = reproducibility()
    assert rec["torch_threads"] >= 1 and rec["deterministic_algorithms"] is False and rec["device_name"]


def _comparable(numbers: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in numbers.items() if k not in TIMING_KEYS}))


# On another CPU model oneDNN picks other conv kernels: the same commit, torch and thread count then sum
# in another order, and ReduceNet's teacher reaches val 98.89 % on an AMD EPYC against the file's 97.41 % (Intel
# Xeon). There the sizes must still be exact and every accuracy within ACC_SLACK of the file's.
SAME_CPU = device_name() == FILE["device_name"]
ACC_SLACK = 0.03  # digits accuracies are ~0.98; a broken run lands far off (chance is 0.1)


def _near(numbers: dict, reference: dict) -> dict:
    """The keys where NUMBERS differ from REFERENCE by more than another CPU's kernels explain."""
    bad = {}
    for key, want in reference.items():
        got = numbers.get(key)
        if key.endswith("_acc"):
            ok = got is not None and abs(got - want) <= ACC_SLACK
        elif key == "deploy_max_abs_diff":  # last-bit noise of the folding, on any CPU
            ok = got is not None and got < 1e-4
        else:
            ok = got == want
        if not ok:
            bad[key] = (got, want)
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, e in ENTRIES.items() if e["cheap"]])
def test_a_cheap_command_reproduces_the_files_numbers_exactly(name, tmp_path):
    got, want = _comparable(measure(name, tmp_path)["numbers"]), _comparable(E[name])
    if SAME_CPU:
        assert got == want
    else:
        assert _near(got, want) == {}, f"on {device_name()}, the file measured on {FILE['device_name']}"


def test_another_cpus_numbers_are_held_to_the_sizes_and_near_accuracies():
    r = _comparable(E["reducenet"])
    assert _near({**r, "teacher_val_acc": r["teacher_val_acc"] + 0.02}, r) == {}
    assert set(_near({**r, "teacher_val_acc": 0.1, "student_params": r["student_params"] + 1}, r)) == \
        {"teacher_val_acc", "student_params"}
    assert set(_near({**r, "deploy_max_abs_diff": 0.5}, r)) == {"deploy_max_abs_diff"}
