"""The bottom layer that ``annotate``, ``manifests`` and ``fusion`` share: task names, image and spectral-file
reading, BT.601 colour conversion, Wald's reduced-resolution protocol and the datasets' on-disk layouts.

It imports nothing from the packages above it, so that the annotation pipeline and the training code read the
same files the same way and give every sample the same id.
"""
