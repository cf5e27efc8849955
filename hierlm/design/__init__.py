"""Design: data + parsed formula -> frozen spec and matrix blocks."""

from hierlm.design.blocks import Design, RandomBlock

__all__ = ["Design", "RandomBlock"]
