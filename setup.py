"""Build hook for the one C kernel; all metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "monitor.engine.stats._ecdf",
            sources=["monitor/engine/stats/_ecdf.c"],
            extra_compile_args=["-O3"],
            optional=True,  # a pure-numpy fallback takes over if it cannot build
        )
    ]
)
