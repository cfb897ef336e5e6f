"""`fixed`: the architecture never changes; the reference row of every table."""
from growth.methods.base import Method
from growth.methods.registry import register_method


@register_method("fixed")
class Fixed(Method):
    name = "fixed"
