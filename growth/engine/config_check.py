"""A value of the wrong type stops before anything is built, with one line naming key, value and what is allowed.

The types come from the defaults themselves: the YAML file of each option the config was composed from
(conf/model/<model.family>.yaml, conf/method/<method.name>.yaml, ...), read as plain YAML (growth/ never
imports Hydra). A default's type allows:
- a float: any number (an int too); an int: an int only (2.5 epochs, 1.5 workers are no counts);
- a bool: true or false; a string: a string; a list: a list whose items have the default items' type;
  a mapping (a section such as model:): a mapping;
- an interpolation: the type of what it points to (${oc.select:method.start_arch,1-1-1}: a string);
- null, or an interpolation we cannot follow: whatever the key's consumer accepts, unless MORE below
  names the types (a null default tells nothing).
Keys that take more than one type on purpose ('auto' or a number, a name or a list) say so in MORE.
A key with no default (added with +key=value, or from a config folder we cannot see) is not checked.
"""
import functools
import re
from pathlib import Path

import yaml

from growth.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"
# The groups whose option is named by a key of its own section (model=vit -> model.family 'vit').
GROUPS = ("data", "method", "optim", "model", "grow_mode", "initializer", "trainer", "recipe")
# Types a key takes besides its default's (every key here is documented in its YAML file).
MORE = {
    "trainer.grad_clip": {"float"},                  # default 0 (off); any max norm
    "trainer.compile": {"null"},
    "trainer.data_on_device": {"bool"},              # auto | true | false
    "trainer.resume": {"str"},
    "trainer.export": {"str"},
    "trainer.quantize": {"str"},                     # null | int8
    "model.stem_stride": {"int"},                    # auto | a stride
    "model.small_input_stem": {"bool"},              # auto | true | false
    "model.img_size": {"int", "str"},                # null | auto | pixels
    "model.kwargs": {"dict"},
    "model.widths": {"list", "str"},                 # [64,96,128] or 64-96-128
    "model.kernels": {"list", "str"},
    "model.embed_dim": {"int"},
    "model.heads": {"int"},
    "model.mlp_ratio": {"float"},
    "model.patch_size": {"int"},
    "model.skip_groups": {"int", "list"},
    "model.arch": {"str"},
    "model.learngene": {"str"},
    "data.resize": {"int"},
    "data.root": {"str"},
    "data.tokenizer": {"str"},
    "data.vocab_size": {"null"},
    "data.num_classes": {"int"},                     # imagefolder, text: null (from the files) | a count
    "optimized_budget_macs": {"float"},              # null | training MACs (optimized_metric=val_acc_at_macs)
    "grow.max_params": {"float"},
    "grow.max_events": {"int"},
    "grow.seed": {"int"},
    "optim.weight_decay_end": {"float"},
    "optim.milestones": {"list"},                    # null | epochs (schedule=multistep)
    "optim.lr_scale_batch": {"int"},                 # null | a reference batch size
    # recipe keys that some recipes set and others leave null: both, whichever option the config uses
    "recipe.train_size": {"int", "null"},            # null (data.image_size) | pixels
    "recipe.eval_size": {"int", "null"},
    "recipe.eval_crop_pct": {"float", "null"},       # null (timm's 0.875) | a fraction
    "recipe.color_jitter": {"float", "list", "null"},  # null | a number | [b, c, s(, h)]
    "recipe.auto_augment": {"str", "null"},          # null | a timm policy | ta_wide
    "recipe.cutmix_minmax": {"list", "null"},
    "recipe.label_smoothing": {"float", "null"},     # null (trainer.label_smoothing) | a number
    "recipe.repeated_aug": {"int", "null"},          # null (off) | repeats
    "method.saliency": {"str"},
    "method.transfer_buffers": {"str"},
    "method.zero_init": {"str"},
    "method.schedule": {"str", "list"},             # adagrow: fixed | faithful; stackbert: epochs, e.g. [2, 4]
    "method.threshold": {"str"},
    "method.local_neighbour": {"str"},
    "method.min_units": {"str"},
    "method.max_widths": {"list"},                  # null | one width per stage
    "method.kd_reduction": {"str"},
    "method.topk": {"str"},
    "method.teacher": {"str"},
    "method.teacher_weights": {"str"},
    "method.learngene": {"str"},
    "method.descendant_heads": {"int"},
    "method.scratch_epochs": {"int"},
    "method.family_depths": {"list"},
    "method.hidden": {"null"},                      # bert2bert: null (keep) | a hidden size
    "method.heads": {"null"},                       # bert2bert: null (keep) | a head count
    "method.ffn": {"int"},                          # bert2bert: null (hidden x mlp_ratio) | a width
    "method.layers_source": {"list"},                # auto | one source stage per layer
    "method.load_head": {"bool"},                    # auto | true | false
    "method.eval_configs": {"list"},                 # all | extremes | a list of configs
    "method.export": {"list", "null"},               # base | super | all | TFF | [true,false,false] | null
    "method.layer": {"int"},                         # best | a hidden-layer index (tiny, gradmax)
    "method.scale": {"float", "str"},                # line_search | a float (tiny, gradmax)
    "method.batches": {"null"},                      # a count | null (the whole pass) (splitgrow)
}
WORDS = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string", "list": "a list",
         "dict": "a mapping, e.g. {key: value}", "null": "null"}
_FLOAT = re.compile(r"^[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?$")  # OmegaConf reads 1e-3 as a float


def kind(value) -> str:
    if value is None:
        return "null"
    for t, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list"), (dict, "dict")):
        if isinstance(value, t):
            return name
    return type(value).__name__


def _default_kind(value):
    """The kind of a YAML default; an interpolation is ('ref', path or None, literal fallback)."""
    if isinstance(value, str):
        if _FLOAT.match(value) and any(c.isdigit() for c in value):
            return "float"
        whole = re.fullmatch(r"\$\{([^${}]*)\}", value)
        if whole:
            ref = whole.group(1)
            if ref.startswith("oc.select:"):
                path, _, fallback = ref[len("oc.select:"):].partition(",")
                return ("ref", path.strip(), _default_kind(yaml.safe_load(fallback)) if fallback else None)
            return ("ref", ref, None) if ":" not in ref else ("ref", None, None)  # other resolvers: unknown
    return kind(value)


def _walk(node: dict, prefix: str, out: dict) -> None:
    for key, value in node.items():
        if key == "defaults":
            continue
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.setdefault(path, []).append(("dict", None))  # a section: grow=3 is no mapping
            _walk(value, path + ".", out)
        else:
            out.setdefault(path, []).append((_default_kind(value), value))


@functools.lru_cache(maxsize=None)
def _read(path: Path) -> dict:
    """path -> [(kind, default)] of one YAML file; a group file's keys sit under the group's name
    unless it is `# @package _global_` (then its sections are top-level keys, as in config.yaml)."""
    text = path.read_text()
    header = [line.split()[2] for line in text.splitlines()[:3] if line.startswith("# @package ")]
    package = header[0] if header else path.parent.name  # conf/logger: `# @package logger.tensorboard`
    top = path.parent == CONF or package == "_global_"
    out = {}
    if not top:
        for i in range(1, package.count(".") + 2):  # logger and logger.tensorboard are sections
            out[".".join(package.split(".")[:i])] = [("dict", None)]
    _walk(yaml.safe_load(text) or {}, "" if top else f"{package}.", out)
    return out


def _option_files(cfg: dict, group: str) -> list:
    """The option a section was composed from: its family or name is the file's stem (model.family=vit)."""
    section = cfg.get(group)
    folder = CONF / group
    if group not in cfg or not folder.is_dir():
        return []
    options = sorted(folder.glob("*.yaml"))
    if not isinstance(section, dict):
        return options  # model=3 in a hand-made dict: every option says it is a mapping
    names = [section[k] for k in ("family", "name") if k in section]
    for name in names:
        if isinstance(name, str) and (folder / f"{name}.yaml").is_file():
            return [folder / f"{name}.yaml"]
    if len(options) == 1:
        return options  # trainer/default.yaml
    if any(not isinstance(name, str) for name in names):
        return options  # a name that is no string names no option: check it against every option's
    return []  # an option from another config folder: unchecked


def default_kinds(cfg: dict) -> dict:
    """path -> (set of allowed kinds, an example default) for the options this config was composed from."""
    if not (CONF / "config.yaml").is_file():
        return {}  # growth/ without its conf/ folder (installed elsewhere): nothing to compare against
    found = {}
    loggers = cfg.get("logger") if isinstance(cfg.get("logger"), dict) else {}  # several options at once
    chosen = [CONF / "logger" / f"{name}.yaml" for name in loggers if (CONF / "logger" / f"{name}.yaml").is_file()]
    for path in [CONF / "config.yaml", *(p for g in GROUPS for p in _option_files(cfg, g)), *chosen]:
        for key, kinds in _read(path).items():
            found.setdefault(key, []).extend(kinds)
    allowed = {}
    for key, entries in found.items():
        kinds = set()
        for k, _ in entries:
            kinds |= _resolve(k, found, depth=0)
        example = next((v for k, v in entries if not isinstance(k, tuple) and "${" not in str(v)), None)
        allowed[key] = (kinds | MORE.get(key, set()), example)
    return allowed


def _resolve(k, found: dict, depth: int) -> set:
    if not isinstance(k, tuple):
        return {k}
    _, path, fallback = k
    kinds = set()
    if path is None or depth > 5 or (path not in found and fallback is None):
        return {"any"}
    for k2, _ in found.get(path, []):
        kinds |= _resolve(k2, found, depth + 1)
    if fallback is not None:
        kinds |= _resolve(fallback, found, depth + 1)
    return kinds


def _fits(value, kinds: set) -> bool:
    k = kind(value)
    return "any" in kinds or k in kinds or (k == "int" and "float" in kinds)


def _nodes(node: dict, prefix: str = ""):
    """Every (path, value) of a config: mappings and what they hold."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        yield path, value
        if isinstance(value, dict):
            yield from _nodes(value, path + ".")


def check_types(cfg: dict) -> None:
    """Raise ConfigError for the first value whose type its default does not allow."""
    allowed = default_kinds(cfg)
    for path, value in _nodes(cfg):
        if path not in allowed:
            continue
        kinds, example = allowed[path]
        if kinds == {"null"}:
            continue  # a null default with no declared type: its consumer checks it
        if not _fits(value, kinds):
            raise ConfigError(path, value, _allowed(kinds, example))
        if kind(value) == "list" and isinstance(example, list) and example:
            items = {kind(x) for x in example}
            for item in value:
                if not _fits(item, items):
                    raise ConfigError(path, value, f"allowed: a list, each item {_words(items)}, e.g. {example}")


def _words(kinds: set) -> str:
    return " or ".join(WORDS.get(k, k) for k in sorted(kinds, key=list(WORDS).index))


def _allowed(kinds: set, example) -> str:
    return f"allowed: {_words(kinds)}" + (f" (default: {example})" if example is not None else "")
