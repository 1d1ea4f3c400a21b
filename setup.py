"""Build hook for the one C extension; everything else is declared in setup.cfg.

setuptools reads setup.cfg for the metadata and packages and this file for
``ext_modules``, so ``pip install -e .`` (the Makefile's venv) compiles
jasmin_sfu/media/_fastpath.c in place. The extension links nothing: libsrtp
is reached through the function pointer pylibsrtp exports (see
jasmin_sfu/media/aiortc_adapter.py). When it cannot be built the daemon runs
the pure-Python forwarding path (``optional=True``; bench/README.md shows the
cost of each).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "jasmin_sfu.media._fastpath",
            sources=["jasmin_sfu/media/_fastpath.c"],
            extra_compile_args=[
                "-O2",
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
                "-Wno-cast-function-type",
            ],
            optional=True,
        )
    ]
)
