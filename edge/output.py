"""How ``classify`` reports a prediction: a line of text, a JSON object, a row of a CSV file.

>>> print(format_prediction(prediction, top_k=3))
lesion.jpg: Melanocytic nevus (mole) (nv) 91.0%, ... | malignant 4.0%
>>> with csv_rows(Path("out.csv"), classifier.labels) as write_row:
...     write_row("lesion.jpg", prediction, "")
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from edge.classifier import Prediction


def format_prediction(prediction: Prediction, top_k: int) -> str:
    """One text line: source, the top-k classes, malignant probability, abstain reason."""
    classes = ", ".join(f"{c.display_name} ({c.label}) {c.score:.1%}" for c in prediction.categories[:top_k])
    line = f"{prediction.source}: {classes}"
    if prediction.malignant_probability is not None:
        line += f" | malignant {prediction.malignant_probability:.1%}"
    if prediction.abstained:
        line += f" | NOT SURE: {prediction.abstain_reason}"
    return line


def prediction_json(prediction: Prediction, top_k: int | None) -> dict[str, object]:
    """The prediction as a JSON-ready dict, keeping the ``top_k`` most probable classes (None: all)."""
    data = prediction.to_dict()
    if top_k is not None:
        data["categories"] = data["categories"][:top_k]
    return data


RowWriter = Callable[[str, "Prediction | None", str], None]


@contextlib.contextmanager
def csv_rows(path: Path | None, labels: Sequence[str]) -> Iterator[RowWriter]:
    """Yields ``write_row(source, prediction_or_None, error)``, flushing every row; a no-op without a path."""
    if path is None:
        yield lambda source, prediction, error: None
        return
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(
            [
                "source",
                "top_label",
                "top_display_name",
                "top_score",
                "malignant_probability",
                "abstained",
                "abstain_reason",
                "error",
            ]
            + [f"p_{label}" for label in labels]
        )
        stream.flush()

        def write_row(source: str, prediction: Prediction | None, error: str) -> None:
            if prediction is None:
                writer.writerow([source, "", "", "", "", "", "", error] + [""] * len(labels))
            else:
                scores = {c.label: c.score for c in prediction.categories}
                malignant = prediction.malignant_probability
                top = prediction.top
                writer.writerow(
                    [
                        source,
                        top.label,
                        top.display_name,
                        f"{top.score:.6f}",
                        "" if malignant is None else f"{malignant:.6f}",
                        int(prediction.abstained),
                        prediction.abstain_reason or "",
                        error,
                    ]
                    + [f"{scores[label]:.6f}" for label in labels]
                )
            stream.flush()

        yield write_row
