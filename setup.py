"""Build hook for the one C kernel; all metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "monitor.stats._ecdf",
            sources=["monitor/stats/_ecdf.c"],
            extra_compile_args=["-O3"],
            optional=True,  # a pure-numpy fallback takes over if it cannot build
        )
    ]
)
