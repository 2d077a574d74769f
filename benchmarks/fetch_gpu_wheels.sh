#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks into .whl/ (ignored by git), for CPython
# 3.12 on manylinux x86_64. That machine has no internet; it has JAX with CUDA (and so NumPy,
# SciPy, ml_dtypes, opt_einsum), Pillow, grpcio, protobuf, h5py and rich, which are NOT
# carried: a second NumPy or protobuf on the path would shadow the ones its JAX was built on.
# benchmarks/gpu_run.sh installs these with --no-deps into a target folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WHEELS=(
    # Keras, KerasTuner and what they import (optree is compiled).
    keras==3.15.1 keras-tuner==1.4.8 kt-legacy==1.0.5 namex==0.1.0 optree==0.20.0
    absl-py==2.5.1 packaging==26.4 six==1.17.0
    # The API: FastAPI, pydantic (pydantic-core is compiled), uvicorn.
    fastapi==0.165.0 starlette==1.10.0 annotated-doc==0.0.7 opentelemetry-api==1.45.2
    pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
    typing-extensions==4.16.0 typing-inspection==0.4.5 annotated-types==0.8.0
    uvicorn==0.54.0 h11==0.16.0 click==8.5.1
    # The store (SQLAlchemy and MarkupSafe are compiled) and its migrations.
    sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 markupsafe==3.0.4
    # The CLI and the HTTP client the benchmark polls with.
    typer==0.29.2 shellingham==1.5.4
    httpx==0.28.1 httpcore==1.0.9 anyio==4.16.0 idna==3.20 certifi==2026.10.19.post1
)

rm -rf .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
ls .whl | wc -l | xargs echo "wheels:"
du -sh .whl
