"""What a data builder returns: three loaders and the facts a model needs."""
from dataclasses import dataclass, field


@dataclass
class DataBundle:
    train: object
    val: object
    test: object
    name: str
    in_chans: int
    num_classes: int
    image_size: int
    extra: dict = field(default_factory=dict)

    @property
    def info(self) -> dict:
        return {"name": self.name, "in_chans": self.in_chans, "num_classes": self.num_classes,
                "image_size": self.image_size, "n_train": self.train.num_samples,
                "n_val": self.val.num_samples, "n_test": self.test.num_samples, **self.extra}
