"""Which runs are repeats of one configuration: group by the config keys that vary, except seed.

    keys = group_keys(runs)        # e.g. ["method.name", "grow_mode.name", "model.arch"]
    runs = with_groups(runs)       # adds "group" (a short label) and "group_index" (style within a method)
"""
import math

import pandas as pd

SEED = "seed"


def config_keys(runs: pd.DataFrame) -> list[str]:
    """The varying config keys collect() put in runs (dotted names when the attrs were lost)."""
    keys = runs.attrs.get("config_keys")
    if keys is None:
        keys = [c for c in runs.columns if "." in c]
    return [k for k in keys if k in runs.columns]


def short(key: str) -> str:
    """"grow_mode.name" -> "grow_mode": a config group is chosen by its name (grow_mode=depth)."""
    return key[: -len(".name")] if key.endswith(".name") and key.count(".") == 1 else key


def _text(value) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "None" if missing else str(value)


def as_text(runs: pd.DataFrame, keys) -> pd.DataFrame:
    """Keys as plain strings, a missing value as "None". (pandas 3's astype(str) keeps NaN as NaN,
    which then breaks a string join; values may also be lists, where pd.isna is elementwise.)"""
    return runs[list(keys)].apply(lambda col: col.map(_text))


def _determined(runs: pd.DataFrame, key: str, by: list[str]) -> bool:
    """Is `key` a function of the keys `by` over these runs (it splits no group of them)?"""
    text = as_text(runs, [key, *by])
    if not by:
        return text[key].nunique() <= 1
    return bool((text.groupby(by)[key].nunique() <= 1).all())


def group_keys(runs: pd.DataFrame) -> list[str]:
    """Varying config keys that tell configurations apart: seed is left out, and so is any key that
    follows from keys already kept (method.start_arch follows model.arch) or only from the seed.

    Order: the method, then the config groups (grow_mode, initializer, ...), then the other keys."""
    keys = [k for k in config_keys(runs) if k != SEED]
    order = sorted(keys, key=lambda k: (k != "method.name", short(k) == k, keys.index(k)))
    kept = []
    for key in order:
        if _determined(runs, key, kept):
            continue
        if SEED in runs.columns and _determined(runs, key, [SEED]) and not _determined(runs, SEED, [key]):
            continue  # a value derived from the seed (e.g. "${seed}" elsewhere in the config)
        kept.append(key)
    return kept


def with_groups(runs: pd.DataFrame) -> pd.DataFrame:
    """runs plus "group" (label), "group_index" (rank of the group within its method, for line styles).

    A label names the method and only the keys that vary among that method's runs:
    "adagrow, grow_mode=depth" and "fixed, model.arch=1-1-1", not every key of every group."""
    runs = runs.copy()
    keys = group_keys(runs)
    text = as_text(runs, keys) if keys else pd.DataFrame(index=runs.index)
    labels = pd.Series("", index=runs.index, dtype=object)
    for method, idx in runs.groupby("method", sort=False).groups.items():
        own = [k for k in keys if k != "method.name" and text.loc[idx, k].nunique() > 1]
        for i in idx:
            parts = [str(method)] + [f"{short(k)}={text.at[i, k]}" for k in own]
            labels.at[i] = ", ".join(parts)
    runs["group"] = labels
    firsts = runs.drop_duplicates("group")
    rank = {g: i for _, sub in firsts.groupby("method", sort=False) for i, g in enumerate(sub["group"])}
    runs["group_index"] = runs["group"].map(rank)
    runs.attrs = {**runs.attrs, "group_keys": keys}
    return runs


def join(frame: pd.DataFrame, runs: pd.DataFrame, columns=("method", "group", "group_index", "seed")):
    """Add the run's method, group and seed to each row of epochs or events (joined on "run")."""
    if frame.empty:
        return frame
    cols = [c for c in columns if c in runs.columns and c not in frame.columns]
    return frame.merge(runs[["run", *cols]], on="run", how="inner")
