"""Text classification data: token-id sequences (N, max_len) and labels, held as tensors on the device.

`build_text` reads ROOT/train.csv or ROOT/train.jsonl (ROOT/val.* and ROOT/test.* when present);
`build_synthetic_text` makes a small learnable task for tests. Nothing downloads.

Token ids of the built-in word tokenizer: 0 = [PAD], 1 = [UNK], 2 = [CLS] (prepended to every sequence),
then the words of the training split, most frequent first (ties alphabetical, so the vocabulary is a
pure function of the training texts). Words are `\\w+` runs and single punctuation marks, lowercased by
default. With `data.tokenizer=/dir` a saved Hugging Face tokenizer is loaded from that directory instead
(local files only); it brings its own special tokens and pad id.

The model reads `vocab_size`, `max_len` and `pad_id` from the bundle's `extra` (DataBundle.info).
"""
import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from growth.data.bundle import DataBundle
from growth.data.loaders import TensorLoader
from growth.data.tensor_sets import _split
from growth.errors import ConfigError

PAD, UNK, CLS = 0, 1, 2
SPECIALS = ("[PAD]", "[UNK]", "[CLS]")
FORMATS = ("csv", "jsonl")
HOW = "ROOT/train.csv or ROOT/train.jsonl with text and label columns (ROOT/val.*, ROOT/test.* optional)"
_WORD = re.compile(r"\w+|[^\w\s]")


# ---- files ----------------------------------------------------------------------------------------

def _find(root: Path, split: str) -> Path | None:
    found = [root / f"{split}.{ext}" for ext in FORMATS if (root / f"{split}.{ext}").is_file()]
    if len(found) > 1:
        raise ConfigError("data.root", str(root), f"holds both {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None


def _rows(path: Path) -> tuple[list[dict], list[str]]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader), list(reader.fieldnames or [])
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError("data.root", str(path), f"line {i} is not JSON ({e.msg}); expected one object per line")
        if not isinstance(row, dict):
            raise ConfigError("data.root", str(path), f"line {i} is not a JSON object; expected one per line")
        rows.append(row)
    return rows, sorted({k for r in rows for k in r})


def read_split(path: Path, text_col: str, label_col: str) -> tuple[list[str], list]:
    """(texts, raw labels) of one file; a missing column names the columns the file does have."""
    rows, columns = _rows(path)
    for key, col in (("data.text_column", text_col), ("data.label_column", label_col)):
        if col not in columns:
            raise ConfigError(key, col, f"not a column of {path}; its columns: {', '.join(columns) or 'none'}")
    if not rows:
        raise ConfigError("data.root", str(path), f"{path.name} has no rows")
    for i, r in enumerate(rows, 1):  # JSONL rows may each lack a key; CSV cells may be empty
        if r.get(text_col) is None or r.get(label_col) in (None, ""):
            raise ConfigError("data.root", str(path), f"row {i} of {path.name} has no '{text_col}' or '{label_col}'")
    return [str(r[text_col]) for r in rows], [r[label_col] for r in rows]


def _as_int(label):
    if isinstance(label, bool):
        return None
    if isinstance(label, int):
        return label
    if isinstance(label, str) and re.fullmatch(r"\d+", label.strip()):
        return int(label)
    return None


def label_ids(train: list, others: dict[str, list], column: str = "label") -> tuple[list[list[int]], list]:
    """Labels that are all non-negative integers (or digit strings, as CSV gives them) are the class ids
    themselves; otherwise the distinct training labels, sorted as strings, are numbered 0, 1, ...
    Returns ids per split (train first) and the class names."""
    splits = [train, *others.values()]
    ints = [[_as_int(v) for v in s] for s in splits]
    if all(v is not None for s in ints for v in s):
        return ints, list(range(max(max(s) for s in ints) + 1))
    classes = sorted({str(v) for v in train})
    index = {c: i for i, c in enumerate(classes)}
    for name, labels in others.items():
        unseen = sorted({str(v) for v in labels} - set(index))
        if unseen:
            raise ConfigError("data.label_column", column, f"labels {unseen[:5]} of the {name} split never "
                              f"occur in train; allowed: {', '.join(classes[:20])}")
    return [[index[str(v)] for v in s] for s in splits], classes


# ---- tokenizers -----------------------------------------------------------------------------------

class WordTokenizer:
    """Word-level vocabulary of the training split: specials, then words by frequency (>= min_freq),
    cut at `vocab_size` ids in all (None: every word)."""

    def __init__(self, texts, vocab_size=None, min_freq=1, lowercase=True):
        self.lowercase = lowercase
        counts = Counter(w for t in texts for w in self.words(t))
        ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if vocab_size is not None:
            ranked = ranked[:vocab_size - len(SPECIALS)]
        self.itos = list(SPECIALS) + ranked
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_id = PAD

    def __len__(self):
        return len(self.itos)

    def words(self, text: str) -> list[str]:
        return _WORD.findall(text.lower() if self.lowercase else text)

    def encode(self, texts, max_len: int) -> torch.Tensor:
        """[CLS] + word ids, truncated to max_len, right-padded with [PAD]."""
        out = torch.full((len(texts), max_len), PAD, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = ([CLS] + [self.stoi.get(w, UNK) for w in self.words(t)])[:max_len]
            out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


class LocalTokenizer:
    """A Hugging Face tokenizer saved in a local directory (AutoTokenizer, local files only)."""

    def __init__(self, path):
        p = Path(str(path)).expanduser()
        if not p.is_dir():
            raise ConfigError("data.tokenizer", path, "directory does not exist; expected a tokenizer saved with "
                              "save_pretrained (or null for the built-in word tokenizer)")
        from transformers import AutoTokenizer
        try:
            self.tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any failure to read a user's directory is a config problem
            raise ConfigError("data.tokenizer", path, f"not a loadable tokenizer directory ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:150] if str(e) else ''})") from None
        if self.tok.pad_token_id is None:
            raise ConfigError("data.tokenizer", path, "the tokenizer has no pad token; it needs one for batching")
        self.pad_id = int(self.tok.pad_token_id)

    def __len__(self):
        return len(self.tok)

    def encode(self, texts, max_len: int) -> torch.Tensor:
        enc = self.tok(list(texts), max_length=max_len, truncation=True, padding="max_length")
        return torch.tensor(enc["input_ids"], dtype=torch.long)


# ---- bundles ----------------------------------------------------------------------------------------

def _int_at_least(cfg, key, default, low, allow_none=False):
    value = cfg.get(key, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"data.{key}", value, f"must be an integer >= {low}" + (" or null" if allow_none else ""))
    return value


def _bundle(name, splits, num_classes, args, extra) -> DataBundle:
    dev, bs, ebs, seed = args["device"], args["batch_size"], args["eval_batch_size"], args["seed"]
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = [(x.to(dev), torch.as_tensor(y, dtype=torch.long).to(dev))
                                                for x, y in splits]
    train = TensorLoader(x_tr, y_tr, bs, shuffle=True, drop_last=True, seed=seed)
    # in_chans/image_size keep the DataBundle contract; image_size is the sequence length
    return DataBundle(train, TensorLoader(x_va, y_va, ebs), TensorLoader(x_te, y_te, ebs), name, 1, num_classes,
                      x_tr.shape[1], {"max_len": x_tr.shape[1], **extra})


def build_text(cfg: dict, args: dict) -> DataBundle:
    root = cfg.get("root")
    if not root or not Path(str(root)).expanduser().is_dir():
        raise ConfigError("data.root", root, f"directory does not exist; expected {HOW}")
    root = Path(str(root)).expanduser()
    train_path = _find(root, "train")
    if train_path is None:
        raise ConfigError("data.root", str(root), f"has no train.csv or train.jsonl; expected {HOW}")
    max_len = _int_at_least(cfg, "max_len", 64, 2)
    text_col, label_col = str(cfg.get("text_column", "text")), str(cfg.get("label_column", "label"))
    texts, labels = read_split(train_path, text_col, label_col)
    val_path, test_path = _find(root, "val"), _find(root, "test")
    fraction = float(cfg.get("val_fraction", 0.1))
    if val_path is not None:
        val = read_split(val_path, text_col, label_col)
    elif fraction == 0 and test_path is not None:  # validate on the test split, as the papers do
        val = read_split(test_path, text_col, label_col)
    else:  # hold a seeded fraction of train out; it must not shape the vocabulary either
        if not 0 < fraction < 1:
            raise ConfigError("data.val_fraction", fraction, "must be in (0, 1) when ROOT has no val file "
                              "(0 only with a test file, which then validates)")
        perm = np.random.default_rng(int(cfg.get("split_seed", 0))).permutation(len(texts))
        n_val = max(1, int(round(len(texts) * fraction)))
        if n_val >= len(texts):
            raise ConfigError("data.val_fraction", fraction, f"leaves no training rows of {len(texts)}")
        val = ([texts[i] for i in perm[:n_val]], [labels[i] for i in perm[:n_val]])
        texts, labels = [texts[i] for i in perm[n_val:]], [labels[i] for i in perm[n_val:]]
    test = read_split(test_path, text_col, label_col) if test_path is not None else val
    (y_tr, y_va, y_te), classes = label_ids(labels, {"val": val[1], "test": test[1]}, label_col)
    expected = cfg.get("num_classes")  # set, e.g. for a dry run's sake: the labels must agree with it
    if expected is not None and expected != len(classes):
        raise ConfigError("data.num_classes", expected, f"the labels give {len(classes)} classes; allowed: that "
                          "count, or null to take it from the labels")
    if cfg.get("tokenizer"):
        tok = LocalTokenizer(cfg["tokenizer"])
    else:
        tok = WordTokenizer(texts, _int_at_least(cfg, "vocab_size", None, len(SPECIALS) + 1, allow_none=True),
                            _int_at_least(cfg, "min_freq", 1, 1), bool(cfg.get("lowercase", True)))
    splits = [(tok.encode(t, max_len), y) for t, y in ((texts, y_tr), (val[0], y_va), (test[0], y_te))]
    return _bundle("text", splits, len(classes), args,
                   {"vocab_size": len(tok), "pad_id": tok.pad_id, "classes": [str(c) for c in classes]})


def build_synthetic_text(cfg: dict, args: dict) -> DataBundle:
    """Which class token occurs most? Each sequence is [CLS] + 4..max_len-1 tokens drawn uniformly from
    `num_classes` class tokens and `distractors` other tokens, padded; ties are redrawn. Mean pooling of
    token embeddings already carries the counts, so even a small model learns it; order does not matter.
    Generated from data.split_seed, split stratified like `synthetic`."""
    n, k = _int_at_least(cfg, "num_samples", 768, 8), _int_at_least(cfg, "num_classes", 4, 2)
    distract, max_len = _int_at_least(cfg, "distractors", 4, 0), _int_at_least(cfg, "max_len", 16, 6)
    min_len = min(_int_at_least(cfg, "min_len", 4, 1), max_len - 1)
    rng = np.random.default_rng(int(cfg.get("split_seed", 0)))
    first = len(SPECIALS)  # class tokens are ids first .. first+k-1, distractors follow
    x, y = np.zeros((n, max_len), dtype=np.int64), np.zeros(n, dtype=np.int64)
    i = 0
    while i < n:
        length = int(rng.integers(min_len, max_len))
        seq = rng.integers(first, first + k + distract, size=length)
        counts = np.bincount(seq - first, minlength=k + distract)[:k]
        if (counts == counts.max()).sum() > 1:
            continue  # a tie has no single answer
        x[i, 0], x[i, 1:length + 1], y[i] = CLS, seq, counts.argmax()
        i += 1
    splits = _split(x, y, cfg, int(cfg.get("split_seed", 0)))
    splits = [(torch.as_tensor(a), b) for a, b in splits]
    return _bundle("synthetic_text", splits, k, args,
                   {"vocab_size": first + k + distract, "pad_id": PAD, "classes": list(range(k))})
