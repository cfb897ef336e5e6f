"""The method registry: `@register_method("name")` on a Method subclass makes `method.name=<name>` build it.

Built-in methods register exactly as outside ones do (docs/adding_a_method.md)."""
METHODS: dict = {}


def register_method(name: str):
    """Class decorator: `method.name=<name>` builds this class."""
    def add(cls):
        from growth.methods.base import Method  # here: base imports nothing of the registry
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"register_method({name!r}): {cls!r} is not a growth.methods.Method subclass")
        if METHODS.get(name, cls) is not cls:
            raise ValueError(f"register_method({name!r}): the name is taken by {METHODS[name].__name__}")
        METHODS[name] = cls
        return cls
    return add
