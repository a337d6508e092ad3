"""The paper's neighbour prompt (Sec. 3.1) as a template: `{CLS}` is the class, `{K}` the number of names."""
from __future__ import annotations

from ltkit.errors import UserError

PAPER_TEMPLATE = (
    "Task: Given a category name, please list out {K} classes that are fine-grained categories related to "
    "the provided classes.\n\nQuery: sports car\n\nResponse: sedan, coupe, SUV, luxury car, electric car\n\n"
    "Query: {CLS}\n\nResponse:"
)


def build_prompt(template: str, class_name: str, k: int) -> str:
    """Fill `{CLS}` and `{K}` (plain replacement, so other braces in a user template are literal)."""
    if "{CLS}" not in template:
        raise UserError("prompt template must contain the placeholder {CLS} (and may contain {K})")
    return template.replace("{K}", str(k)).replace("{CLS}", class_name)

