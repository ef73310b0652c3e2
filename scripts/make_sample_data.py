"""Writes the sample datasets under manifests/examples/data/: our own problems in the public sets' formats.

- `gsm8k-train.jsonl`, `gsm8k-test.jsonl`: GSM8K's format (`question`; `answer` = worked steps with
  `<<a*b=c>>` calculator annotations and a last line `#### <number>`).
- `gsm8k-configmap.yaml`: both GSM8K-format files as the ConfigMap `gsm8k-sample` (keys `train.jsonl`,
  `test.jsonl`) that manifests/examples/rljob.yaml reads its dataset from.
- `math-train.parquet`, `math-test.parquet`: the MATH format (`problem`; `solution` in LaTeX ending in a
  `\\boxed{}` answer; `level` "Level 1".."Level 5"; `type` the subject).

The problems are generated from templates with a fixed seed (nothing copied from the public sets), so the
files can be re-made exactly: `python scripts/make_sample_data.py [--out DIR]`. The `-test` files are a
held-out split (for evaluation) with no problem in common with the `-train` files.
tests/workers/test_sample_data.py checks that the committed files equal what this script generates.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from fractions import Fraction
from math import comb, factorial
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "manifests" / "examples" / "data"
TRAIN_RECORDS = 50
"""Records in each training file (enough for an example job's first steps, small enough to read in review)."""
TEST_RECORDS = 12
"""Records in each held-out file."""
SEEDS = {"train": 20261204, "test": 4021162}
"""Generator seed per split (different streams; duplicates of train are skipped in test anyway)."""
NAMES = ["Maya", "Tomas", "Aiko", "Priya", "Jonas", "Lena", "Omar", "Sofia", "Kwame", "Ines", "Ravi", "Nora"]
GOODS = ["apples", "pencils", "stickers", "marbles", "cookies", "stamps", "shells", "beads"]

Record = dict[str, str]


# --------------------------------------------------------------------------------------- GSM8K style


def _gsm_buy_more(r: random.Random) -> Record:
    name, item = r.choice(NAMES), r.choice(GOODS)
    a, b, c = r.randint(3, 30), r.randint(2, 6), r.randint(3, 12)
    bc = b * c
    return {
        "question": f"{name} has {a} {item}. {name} buys {b} packs with {c} {item} in each pack. "
                    f"How many {item} does {name} have now?",
        "answer": f"The packs hold {b} * {c} = <<{b}*{c}={bc}>>{bc} {item}.\n"
                  f"{name} has {a} + {bc} = <<{a}+{bc}={a + bc}>>{a + bc} {item} now.\n#### {a + bc}",
    }


def _gsm_share(r: random.Random) -> Record:
    name, item = r.choice(NAMES), r.choice(GOODS)
    friends, each, left = r.randint(2, 8), r.randint(2, 9), r.randint(1, 9)
    total = friends * each + left
    return {
        "question": f"{name} had {total} {item} and gave {each} to each of {friends} friends. "
                    f"How many {item} does {name} have left?",
        "answer": f"{name} gave away {friends} * {each} = <<{friends}*{each}={friends * each}>>{friends * each} "
                  f"{item}.\nSo {total} - {friends * each} = <<{total}-{friends * each}={left}>>{left} are left.\n"
                  f"#### {left}",
    }


def _gsm_wage(r: random.Random) -> Record:
    name = r.choice(NAMES)
    rate, hours, days = r.randint(8, 25), r.randint(2, 8), r.randint(2, 6)
    per_day = rate * hours
    return {
        "question": f"{name} earns ${rate} an hour and works {hours} hours a day. How much does {name} earn "
                    f"in {days} days?",
        "answer": f"In one day {name} earns {rate} * {hours} = <<{rate}*{hours}={per_day}>>{per_day} dollars.\n"
                  f"In {days} days that is {per_day} * {days} = <<{per_day}*{days}={per_day * days}>>"
                  f"{per_day * days} dollars.\n#### {per_day * days}",
    }


def _gsm_discount(r: random.Random) -> Record:
    name = r.choice(NAMES)
    price, pct, count = r.choice([20, 40, 50, 60, 80, 120]), r.choice([10, 25, 50]), r.randint(2, 5)
    off = price * pct // 100
    each = price - off
    return {
        "question": f"A jacket costs ${price}. During a sale it is {pct}% off. {name} buys {count} jackets in "
                    f"the sale. How much does {name} pay?",
        "answer": f"The discount is {price} * {pct} / 100 = <<{price}*{pct}/100={off}>>{off} dollars.\n"
                  f"Each jacket costs {price} - {off} = <<{price}-{off}={each}>>{each} dollars.\n"
                  f"{count} jackets cost {each} * {count} = <<{each}*{count}={each * count}>>{each * count} "
                  f"dollars.\n#### {each * count}",
    }


def _gsm_ages(r: random.Random) -> Record:
    a, b = r.sample(NAMES, 2)
    age, diff, years = r.randint(5, 20), r.randint(2, 9), r.randint(2, 10)
    return {
        "question": f"{a} is {age} years old. {b} is {diff} years older than {a}. How old will {b} be in "
                    f"{years} years?",
        "answer": f"{b} is {age} + {diff} = <<{age}+{diff}={age + diff}>>{age + diff} years old.\n"
                  f"In {years} years {b} will be {age + diff} + {years} = <<{age + diff}+{years}="
                  f"{age + diff + years}>>{age + diff + years}.\n#### {age + diff + years}",
    }


def _gsm_rows(r: random.Random) -> Record:
    rows, per_row, broken = r.randint(3, 12), r.randint(4, 15), r.randint(1, 5)
    total = rows * per_row
    return {
        "question": f"A garden has {rows} rows of tulips with {per_row} tulips in each row. A storm breaks "
                    f"{broken} tulips. How many tulips are still standing?",
        "answer": f"There are {rows} * {per_row} = <<{rows}*{per_row}={total}>>{total} tulips.\n"
                  f"After the storm {total} - {broken} = <<{total}-{broken}={total - broken}>>{total - broken} "
                  f"are standing.\n#### {total - broken}",
    }


GSM_TEMPLATES: list[Callable[[random.Random], Record]] = [
    _gsm_buy_more, _gsm_share, _gsm_wage, _gsm_discount, _gsm_ages, _gsm_rows,
]


# ---------------------------------------------------------------------------------------- MATH style


def _math_linear(r: random.Random) -> Record:
    a, x, b = r.randint(2, 9), r.randint(-12, 12), r.randint(-20, 20)
    c = a * x + b
    sign = "+" if b >= 0 else "-"
    return {
        "problem": f"Solve for $x$: ${a}x {sign} {abs(b)} = {c}$.",
        "solution": f"Moving the constant to the right gives ${a}x = {c} {'-' if b >= 0 else '+'} {abs(b)} = "
                    f"{c - b}$, so $x = \\frac{{{c - b}}}{{{a}}} = \\boxed{{{x}}}$.",
        "level": f"Level {r.randint(1, 2)}", "type": "Algebra",
    }


def _math_remainder(r: random.Random) -> Record:
    m = r.randint(3, 13)
    n = r.randint(100, 9999)
    q, rem = divmod(n, m)
    return {
        "problem": f"What is the remainder when ${n}$ is divided by ${m}$?",
        "solution": f"Since ${m} \\cdot {q} = {m * q}$ and ${n} - {m * q} = {rem}$, the remainder is "
                    f"$\\boxed{{{rem}}}$.",
        "level": f"Level {r.randint(1, 3)}", "type": "Number Theory",
    }


def _math_fractions(r: random.Random) -> Record:
    a, b, c, d = r.randint(1, 9), r.randint(2, 12), r.randint(1, 9), r.randint(2, 12)
    total = Fraction(a, b) + Fraction(c, d)
    answer = str(total.numerator) if total.denominator == 1 else f"\\frac{{{total.numerator}}}{{{total.denominator}}}"
    return {
        "problem": f"What is $\\frac{{{a}}}{{{b}}} + \\frac{{{c}}}{{{d}}}$? Express your answer as a common "
                   "fraction in lowest terms.",
        "solution": f"Over the common denominator ${b * d}$ the sum is $\\frac{{{a * d + c * b}}}{{{b * d}}}$, "
                    f"which reduces to $\\boxed{{{answer}}}$.",
        "level": f"Level {r.randint(2, 3)}", "type": "Prealgebra",
    }


def _math_arrangements(r: random.Random) -> Record:
    n = r.randint(3, 7)
    return {
        "problem": f"In how many ways can {n} different books be arranged in a row on a shelf?",
        "solution": f"There are {n} choices for the first place, {n - 1} for the second, and so on, so "
                    f"${n}! = \\boxed{{{factorial(n)}}}$ arrangements.",
        "level": f"Level {r.randint(1, 2)}", "type": "Counting & Probability",
    }


def _math_committee(r: random.Random) -> Record:
    n = r.randint(5, 12)
    k = r.randint(2, min(5, n - 1))
    return {
        "problem": f"A club has {n} members. In how many ways can it choose a committee of {k} members?",
        "solution": f"The order does not matter, so the count is $\\binom{{{n}}}{{{k}}} = "
                    f"\\boxed{{{comb(n, k)}}}$.",
        "level": f"Level {r.randint(2, 4)}", "type": "Counting & Probability",
    }


def _math_triangle(r: random.Random) -> Record:
    base, height = 2 * r.randint(2, 15), r.randint(3, 20)
    return {
        "problem": f"A triangle has a base of length ${base}$ and a height of ${height}$. What is its area?",
        "solution": f"The area is $\\frac{{1}}{{2}} \\cdot {base} \\cdot {height} = \\boxed{{{base * height // 2}}}$.",
        "level": f"Level {r.randint(1, 2)}", "type": "Geometry",
    }


def _signed(value: int, suffix: str = "") -> str:
    """" + 3x" / " - 3x" / "" for 0: a term after the first."""
    if value == 0:
        return ""
    return f" + {value}{suffix}" if value > 0 else f" - {-value}{suffix}"


def _math_quadratic(r: random.Random) -> Record:
    p, q = sorted(r.sample(range(-9, 10), 2))
    factors = "".join(f"(x{_signed(-root)})" for root in (p, q))
    return {
        "problem": f"What is the sum of the roots of $x^2{_signed(-(p + q), 'x')}{_signed(p * q)} = 0$?",
        "solution": f"The polynomial factors as ${factors}$, so its roots are ${p}$ and ${q}$, and their sum is "
                    f"$\\boxed{{{p + q}}}$.",
        "level": f"Level {r.randint(3, 5)}", "type": "Intermediate Algebra",
    }


MATH_TEMPLATES: list[Callable[[random.Random], Record]] = [
    _math_linear, _math_remainder, _math_fractions, _math_arrangements, _math_committee, _math_triangle,
    _math_quadratic,
]


# -------------------------------------------------------------------------------------------- output


def generate(templates: list[Callable[[random.Random], Record]], key: str, count: int, seed: int,
             exclude: frozenset[str] = frozenset()) -> list[Record]:
    """`count` distinct records, templates taken in turn (a duplicate is skipped, so a template with few
    distinct problems yields fewer records), none whose `key` text is in `exclude`."""
    r = random.Random(seed)
    out: list[Record] = []
    seen = set(exclude)
    for attempt in range(100 * count):
        rec = templates[attempt % len(templates)](r)
        if rec[key] not in seen:
            seen.add(rec[key])
            out.append(rec)
            if len(out) == count:
                return out
    raise RuntimeError(f"the templates give fewer than {count} distinct records")


def sample_sets() -> dict[str, list[Record]]:
    """File name → records of every sample file."""
    gsm_train = generate(GSM_TEMPLATES, "question", TRAIN_RECORDS, SEEDS["train"])
    gsm_test = generate(GSM_TEMPLATES, "question", TEST_RECORDS, SEEDS["test"], frozenset(x["question"] for x in gsm_train))
    math_train = generate(MATH_TEMPLATES, "problem", TRAIN_RECORDS, SEEDS["train"])
    math_test = generate(MATH_TEMPLATES, "problem", TEST_RECORDS, SEEDS["test"], frozenset(x["problem"] for x in math_train))
    return {"gsm8k-train.jsonl": gsm_train, "gsm8k-test.jsonl": gsm_test,
            "math-train.parquet": math_train, "math-test.parquet": math_test}


def jsonl_text(records: list[Record]) -> str:
    return "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)


CONFIGMAP_NAME = "gsm8k-sample"
"""The ConfigMap of the example job's dataset (manifests/examples/rljob.yaml: dataset.configMap)."""
CONFIGMAP_KEYS = {"train.jsonl": "gsm8k-train.jsonl", "test.jsonl": "gsm8k-test.jsonl"}
"""ConfigMap key (the file name under the coordinator's /data) → sample file."""


def configmap_text(sets: dict[str, list[Record]]) -> str:
    """The ConfigMap manifest holding the GSM8K-format files (JSON lines as YAML literal blocks)."""
    lines = [
        "# Sample GSM8K-format data (our own problems) for manifests/examples/rljob.yaml; generated by",
        "# scripts/make_sample_data.py. kubectl apply -f manifests/examples/data/gsm8k-configmap.yaml",
        "apiVersion: v1", "kind: ConfigMap", "metadata:", f"  name: {CONFIGMAP_NAME}", "data:",
    ]
    for key, name in CONFIGMAP_KEYS.items():
        lines.append(f"  {key}: |")
        lines += [f"    {line}" for line in jsonl_text(sets[name]).splitlines()]
    return "\n".join(lines) + "\n"


def write(out: Path) -> list[Path]:
    """Write every sample file into `out`; returns their paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    sets = sample_sets()
    (out / "gsm8k-configmap.yaml").write_text(configmap_text(sets))
    written = [out / "gsm8k-configmap.yaml"]
    for name, records in sets.items():
        path = out / name
        if name.endswith(".jsonl"):
            path.write_text(jsonl_text(records))
        else:
            pq.write_table(pa.Table.from_pylist(records), path)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory to write (default: %(default)s)")
    for path in write(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
