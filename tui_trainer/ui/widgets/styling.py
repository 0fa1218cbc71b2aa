"""Component styles (defined in app.tcss) for widgets that draw rich Text themselves."""

from __future__ import annotations

from rich.style import Style
from textual.widget import Widget

PLAIN = Style.null()


def component_style(widget: Widget, name: str) -> Style:
    """The style of one of the widget's component classes; plain once the widget has been removed
    (the app may still write to it while it is being taken down)."""
    return widget.get_component_rich_style(name, default=PLAIN)
