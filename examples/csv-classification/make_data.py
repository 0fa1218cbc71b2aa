"""Write a small made-up customer table to data/customers.csv beside this script, or to the path given
(offline, seeded).

Columns: age, monthly_spend, tenure_months (numbers, a few missing), plan and region (text categories),
churned (yes/no, the target). Run it, then train:

    python examples/csv-classification/make_data.py
    tui-trainer --headless --preset examples/csv-classification/churn.yaml
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

ROWS = 2000


def main(out: Path) -> Path:
    rng = random.Random(0)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["age", "monthly_spend", "tenure_months", "plan", "region", "churned"])
        for _ in range(ROWS):
            age = rng.randint(18, 80)
            plan = rng.choice(["basic", "plus", "pro"])
            region = rng.choice(["north", "south", "east", "west"])
            tenure = rng.randint(0, 72)
            spend = round(rng.gauss({"basic": 20, "plus": 45, "pro": 90}[plan], 8), 2)
            risk = 1.5 - tenure / 24 + (plan == "basic") - (age > 50) * 0.5 + rng.gauss(0, 0.7)
            writer.writerow([age if rng.random() > 0.02 else "", spend, tenure if rng.random() > 0.02 else "",
                             plan, region, "yes" if risk > 0 else "no"])
    return out


if __name__ == "__main__":
    default = Path(__file__).resolve().parent / "data" / "customers.csv"
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else default))
