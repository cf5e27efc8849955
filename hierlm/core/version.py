"""The version of hierlm (also ``hierlm.__version__``), recorded in every saved fit."""

__all__ = ["__version__"]

__version__ = "0.1.0"
