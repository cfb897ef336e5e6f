"""What a model needs of the data (name, channels, classes, image size; token facts for text), from the
data config alone: no file is read. A dry run (growth/engine/dry_run.py) builds from these.

The facts match what the dataset's builder puts in DataBundle.info for the same config, except where
only the files can tell: an ImageFolder's class count (`data.num_classes`, or the class folders of
ROOT/train when they exist), a text set's classes (`data.num_classes`) and its word vocabulary, which
`data.vocab_size` caps (the real vocabulary can be smaller when the training texts have fewer words).
"""
from pathlib import Path

from growth.data.text import PAD, SPECIALS, LocalTokenizer, _int_at_least
from growth.data.vision import SETS
from growth.errors import ConfigError


def _image(name, in_chans, num_classes, image_size) -> dict:
    return {"name": name, "in_chans": int(in_chans), "num_classes": int(num_classes), "image_size": int(image_size)}


def _classes(cfg: dict, found: int | None, where: str) -> int:
    """data.num_classes when set, else what the files say (`found`); neither: the key is needed."""
    value = cfg.get("num_classes")
    if value is None and found is not None:
        return found
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ConfigError("data.num_classes", value, f"{where}; allowed: an integer >= 2")
    return value


def imagefolder_classes(root) -> int | None:
    """The class folders of ROOT/train (None when there is no such folder)."""
    train = Path(str(root)).expanduser() / "train" if root else None
    if train is None or not train.is_dir():
        return None
    return sum(1 for p in train.iterdir() if p.is_dir())


def _digits(cfg):
    return _image("digits", 1, 10, cfg.get("resize") or 8)


def _synthetic(cfg):
    size = cfg.get("resize") or cfg.get("image_size", 8)
    return _image("synthetic", cfg.get("channels", 1), cfg.get("num_classes", 4), size)


def _imagefolder(cfg):
    k = _classes(cfg, imagefolder_classes(cfg.get("root")),
                 "needed when ROOT/train does not exist (a dry run without files): the class count")
    return _image("imagefolder", 3, k, cfg.get("image_size", 32))


def _torchvision(cfg):
    _, chans, classes, size, *_ = SETS[cfg["name"]]
    return _image(cfg["name"], chans, classes, size)


def _tokens(name, num_classes, max_len, vocab_size, pad_id, classes) -> dict:
    # as text._bundle: one "channel", the sequence length stands in for the image size
    return {"name": name, "in_chans": 1, "num_classes": num_classes, "image_size": max_len, "max_len": max_len,
            "vocab_size": vocab_size, "pad_id": pad_id, "classes": classes}


def _synthetic_text(cfg):
    k = _int_at_least(cfg, "num_classes", 4, 2)
    vocab = len(SPECIALS) + k + _int_at_least(cfg, "distractors", 4, 0)
    return _tokens("synthetic_text", k, _int_at_least(cfg, "max_len", 16, 6), vocab, PAD, list(range(k)))


def _text(cfg):
    k = _classes(cfg, None, "a dry run cannot count the labels of the files: the class count")
    max_len = _int_at_least(cfg, "max_len", 64, 2)
    if cfg.get("tokenizer"):  # a tokenizer directory is no dataset file: its size and pad id are read
        tok = LocalTokenizer(cfg["tokenizer"])
        return _tokens("text", k, max_len, len(tok), tok.pad_id, list(range(k)))
    vocab = _int_at_least(cfg, "vocab_size", None, len(SPECIALS) + 1, allow_none=True)
    if vocab is None:
        raise ConfigError("data.vocab_size", None, "a dry run cannot count the words of the files; allowed: an "
                          f"integer >= {len(SPECIALS) + 1} (the real run's vocabulary is at most this)")
    return _tokens("text", k, max_len, vocab, PAD, list(range(k)))


INFO = {"digits": _digits, "synthetic": _synthetic, "imagefolder": _imagefolder, "text": _text,
        "synthetic_text": _synthetic_text, **{name: _torchvision for name in SETS}}


def data_info(cfg: dict) -> dict:
    """name, in_chans, num_classes, image_size (and max_len, vocab_size, pad_id for token data)."""
    name = cfg.get("name")
    if name not in INFO:
        raise ConfigError("data.name", name, f"allowed: {', '.join(sorted(INFO))}")
    return INFO[name](cfg)
