"""Where, what, when and how to grow: modes (schedules), policies (saliency), initializers."""
