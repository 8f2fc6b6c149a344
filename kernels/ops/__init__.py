"""Operator packages (flash-linear-attention style ``ops/<op>/``): ``bi_wkv`` and ``cross_scan``."""
