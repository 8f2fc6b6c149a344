"""Package layout. The ``kernels/`` folder installs under the import name ``rwkvfusion_kernels``: the plain name
``kernels`` belongs to Hugging Face's kernel-hub package (which ``transformers`` probes for), and two packages of
one name shadow each other. Everything else is in ``pyproject.toml``."""
from setuptools import find_packages, setup

OWN = ("annotate", "fusion", "manifests", "rwkvfusion_io")
KERNELS = [p.replace("kernels", "rwkvfusion_kernels", 1) for p in find_packages(include=["kernels", "kernels.*"])]

setup(packages=find_packages(include=[f"{p}*" for p in OWN]) + KERNELS,
      package_dir={"rwkvfusion_kernels": "kernels"})
