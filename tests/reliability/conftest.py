"""The counts of what the reliability tests tried and what held, printed at the end of the session."""

from tests.reliability.app_helpers import TALLIES


def pytest_terminal_summary(terminalreporter):
    tallies = [tally for tally in TALLIES if tally.tried]
    if tallies:
        terminalreporter.section("issue 4: tried / held")
        for tally in tallies:
            for line in tally.summary():
                terminalreporter.write_line(line)
