"""`fixed`: the architecture never changes; the reference row of every table."""
from growth.methods.base import Method


class Fixed(Method):
    name = "fixed"
