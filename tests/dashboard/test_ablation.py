"""The member ablation widget: a button, then the bar chart and the reading; a chain's refusal.

The runs are written without a worker (`fake_run`), in the inspector's home: a fusion whose
stack.keras is the spec built untrained, and a sequential run. The inspector, the real one,
ablates them.
"""

import pytest
from streamlit.testing.v1 import AppTest

from core import runs
from core.build.stacking import build
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec
from dashboard.widgets.ablation import ablation_figure
from tests.dashboard.apptest import TIMEOUT_S, TINY, elements, fake_run, texts

pytestmark = pytest.mark.usefixtures("inspector_home")

FUSION = StackSpec(
    name="fusion", mode="fusion",
    members=(MemberSpec("left", template="mlp", params={"hidden_units": [8]}),
             MemberSpec("right", template="mlp", params={"hidden_units": [8]})),
    head=MemberSpec("head", template="dense_head", params={"hidden_units": []}),
    train=TrainSpec(epochs=1, validation_split=0.2, seed=0), dataset=DatasetSpec(name="iris"))
RESULT = {"metric": "val_accuracy", "higher_is_better": True, "full": 0.9, "carrier": "left",
          "members": [{"member": "left", "value": 0.3, "drop": 0.6, "removed": ""},
                      {"member": "right", "value": 0.88, "drop": 0.02, "removed": ""},
                      {"member": "raw input", "value": 0.9, "drop": 0.0, "removed": ""}]}


def panel(run_id: str) -> None:
    from core import runs
    from dashboard.widgets.ablation import ablation_panel

    ablation_panel(runs.get(run_id))


def widget(run_id: str) -> AppTest:
    at = AppTest.from_function(panel, args=(run_id,), default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_figure_has_a_bar_per_variant_with_its_drop():
    bar = ablation_figure(RESULT).data[0]
    assert list(bar.x) == ["whole stack", "without left", "without right", "without the raw input"]
    assert list(bar.y) == [0.9, 0.3, 0.88, 0.9]
    assert list(bar.text) == ["0.900", "drop +0.600", "drop +0.020", "drop +0.000"]
    assert bar.marker.color[1] != bar.marker.color[2]  # the carrier stands out
    assert "lower is better" in ablation_figure({**RESULT, "higher_is_better": False}).layout.title.text


def test_the_button_ablates_a_fusion_run_and_the_chart_stays(shared_home, no_workers):
    run_id = fake_run(spec=FUSION, epochs=1, status="finished")
    build(FUSION).save(runs.get(run_id).folder / "stack.keras")
    at = widget(run_id)
    assert not elements(at, "plotly_chart")
    at.button(key="runs-ablation").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (chart,) = elements(at, "plotly_chart")
    assert "without left" in chart.proto.spec and "without right" in chart.proto.spec
    assert "val_accuracy" in texts(at) and "Scored on 30 validation samples." in texts(at)
    assert "Not ablated: head" in texts(at)
    at.run()  # a later rerun: the answer is remembered, no button
    assert len(elements(at, "plotly_chart")) == 1 and not at.button


def test_a_sequential_run_says_why_it_cannot_be_ablated_without_a_button(shared_home, no_workers):
    at = widget(fake_run(spec=TINY, epochs=1, status="finished"))
    assert "there is no merge to remove one from" in texts(at)
    assert not at.button and not elements(at, "plotly_chart")


def test_an_unfinished_run_has_no_button(shared_home, no_workers):
    at = widget(fake_run(spec=FUSION, epochs=1))
    assert "needs a finished run" in texts(at) and not at.button

