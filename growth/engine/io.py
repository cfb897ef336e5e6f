"""Atomic writes: a file is either the old version or the complete new one, never half written; and the
one way our torch files (checkpoints, learngenes, teachers) are read back."""
import json
import os
import tempfile
from pathlib import Path

import torch

from growth.errors import ConfigError


def _umask_mode() -> int:
    """The mode a plain open() would give a new file (0644 under umask 022). mkstemp makes 0600, which
    would keep a lab mate on the same cluster from reading the run record."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic(path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _umask_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


def atomic_write_bytes(path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(path, obj) -> None:
    _atomic(path, lambda f: torch.save(obj, f))


def append_jsonl(path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path) -> list[dict]:
    """The rows of a JSON-lines record. Only a cut last line (a kill mid-write: the file does not end with
    a newline) is dropped; any other line that is not JSON is an error naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines) and not text.endswith("\n"):
                break  # append_jsonl writes a row and its newline at once: this one was cut short
            raise ConfigError(f"{path}:{number}", line[:60] + ("..." if len(line) > 60 else ""),
                              f"not a JSON row ({e.msg}); only a cut last line is skipped: "
                              "repair or delete this line") from None
    return rows


# Whether read_torch may unpickle Python objects (trainer.trust_pickles, set once per job by
# growth/engine/job.py). Off: only tensors, plain containers and specs load (torch's weights_only).
TRUST_PICKLES = False


def set_trust_pickles(value) -> None:
    global TRUST_PICKLES
    if value is not None and not isinstance(value, bool):  # "no" or 1 must not pass for a choice
        raise ConfigError("trainer.trust_pickles", value, "allowed: true, false")
    TRUST_PICKLES = value is True


def _pickled_objects(path) -> list[str]:
    """The Python objects a torch file would build on load, found without building them ([] when the
    file is not a torch file at all)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a torch file: read_torch reports it as corrupt
        return []


def read_torch(path, key: str, missing: str, corrupt: str):
    """torch.load of one of our files, or a one-line ConfigError naming `key`: `missing` when there is no
    such file, `corrupt` (with the error type) when it does not unpickle, and a refusal when it holds
    pickled Python objects: a checkpoint, learngene or teacher is what people download and share, and
    unpickling one can run any code. Our own files hold tensors, plain containers and specs only."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(key, str(path), missing)
    try:
        return torch.load(path, map_location="cpu", weights_only=not TRUST_PICKLES)
    except Exception as e:  # any unpickling failure means the file is unusable as it stands
        objects = [] if TRUST_PICKLES else _pickled_objects(path)
        if objects:
            raise ConfigError(key, str(path), f"holds pickled Python objects ({', '.join(sorted(objects)[:3])}); "
                              "refused because unpickling can run code; set trainer.trust_pickles=true "
                              "to load a file you trust") from None
        raise ConfigError(key, str(path), f"{corrupt} ({type(e).__name__})") from None
