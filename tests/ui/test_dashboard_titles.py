"""The metric chart is titled for the run's task once the run says what it is: in the default engine-process
mode the dashboard opens before RunStarted arrives, and a regression run's chart said "Accuracy"."""

from __future__ import annotations

from textual.app import App

from tests.ui.test_view import progress, started
from tui_trainer.engine.events import EpochEnded
from tui_trainer.ui.run_view import RunView
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.widgets.charts import metric_lines


async def test_a_regression_run_that_starts_after_the_dashboard_is_titled_r2():
    view = RunView()  # what the dashboard holds before the engine has said anything
    screen = DashboardScreen()
    screen.view = view
    app = App()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(screen)
        await pilot.pause()
        view.apply(started(task="regression"))
        view.apply(progress(1))
        view.apply(EpochEnded(epoch=1, step=10, train={"train_loss": 1.0}, val={"val_loss": 0.5, "val_r2": 0.7,
                                                                                "val_mae": 0.2},
                              lr=0.1, elapsed_s=1, is_best=False))
        screen.redraw_charts()
        await pilot.pause()
        assert screen.metric_chart.title == "Validation R²"
        assert all("from -1" not in line.label for line in metric_lines(view))
