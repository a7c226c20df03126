"""dashboard.services: what the pages ask of core, and what they ask only once."""

import pytest

from core.spec import MemberSpec
from dashboard import graph_edit, graph_layout, services
from dashboard.spec_edit import default_spec
from tests.dashboard.test_graph_edit import two_tower


@pytest.fixture
def asked(monkeypatch):
    """The specs the (fake) inspector was asked to check, with a fresh check cache."""
    specs = []

    class Inspector:
        def check(self, spec):
            specs.append(spec)
            return {"ok": True, "problems": [], "members": [], "edges": []}

    monkeypatch.setattr(services, "client", Inspector)
    services._check.clear()
    yield specs
    services._check.clear()


@pytest.mark.parametrize("spec", [default_spec(), two_tower()], ids=["preset", "graph"])
def test_moving_a_node_asks_the_inspector_nothing_but_a_parameter_change_does(asked, spec):
    services.check(spec)
    services.check(graph_layout.move(spec, {"input": [123, 45]}))
    services.check(graph_layout.auto_layout(spec))
    assert len(asked) == 1
    assert asked[0].layout == {}  # the inspector never sees positions
    first = spec.all_members()[0].name
    changed = graph_edit.replace_member(spec, first, MemberSpec(first, template="cnn_features",
                                                                params={"dense_units": 8}))
    services.check(changed)
    assert len(asked) == 2 and asked[1].all_members()[0].params == {"dense_units": 8}
