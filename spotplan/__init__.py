"""spotplan: move the right GPU workloads onto spot capacity, and move them safely."""

__version__ = "0.1.0"
