import pytest

from hawk.npu import load_spec, register_intrinsics


@pytest.fixture(scope="session")
def davinci():
    spec = load_spec("davinci-like")
    register_intrinsics(spec)
    return spec


@pytest.fixture(scope="session")
def edge():
    spec = load_spec("edge-like")
    register_intrinsics(spec)
    return spec
