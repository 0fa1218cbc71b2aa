"""The screens' name for tui_trainer.formatting: one definition of how numbers, sizes, durations, times and
metrics read, shared with the headless runner and the command line."""

from tui_trainer.formatting import NOT_AVAILABLE as NOT_AVAILABLE
from tui_trainer.formatting import bar as bar
from tui_trainer.formatting import compact_int as compact_int
from tui_trainer.formatting import duration as duration
from tui_trainer.formatting import metric as metric
from tui_trainer.formatting import metrics_text as metrics_text
from tui_trainer.formatting import number as number
from tui_trainer.formatting import percent as percent
from tui_trainer.formatting import rate as rate
from tui_trainer.formatting import size as size
from tui_trainer.formatting import stamp as stamp
from tui_trainer.formatting import when as when
