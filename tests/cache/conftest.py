import pytest

from tests.cache.synthetic import make_table


@pytest.fixture
def table():
    return make_table()
