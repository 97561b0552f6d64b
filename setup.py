"""Build of kvtrees: metadata lives in pyproject.toml; this adds the cffi extension."""
from setuptools import find_packages, setup

setup(
    package_dir={"": "src"},
    packages=find_packages("src"),
    cffi_modules=["src/kvtrees/_build_ffi.py:ffibuilder"],
    zip_safe=False,
)
