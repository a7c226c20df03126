"""Fixtures shared by the tests of core/loading*.py, loaded by each of those modules with
`pytest_plugins = ["tests.core.model_files.loading_fixtures"]`.

Session-scoped, so the genuine files are saved once and core.model_files.loading verifies each in a
child process only once (each child imports Keras, ~4 s), whichever modules run.
"""

from concurrent.futures import ThreadPoolExecutor

import keras
import pytest

from core.model_files import loading
from tests.core.model_files.loading_models import BUILDERS, LIMITS


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """{(kind, fmt): (path, original model)} for a Sequential and a Functional model."""
    folder = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    result = {}
    for kind, build in BUILDERS.items():
        model = build()
        for fmt in ("keras", "h5"):
            path = folder / f"{kind}.{fmt}"
            model.save(path)
            result[kind, fmt] = (path, model)
    return result


@pytest.fixture(scope="session")
def summaries(saved):
    """Each genuine file verified once in a child, two children at a time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case: pool.submit(loading.summarize_model_file, path, LIMITS)
                   for case, (path, _) in saved.items()}
        return {case: future.result() for case, future in futures.items()}
