"""The label sets of the starter corpus, in the order the model's output columns use."""

from __future__ import annotations

TOPICS: tuple[str, ...] = (
    "Analyst Update",
    "Fed | Central Banks",
    "Company | Product News",
    "Treasuries | Corporate Debt",
    "Dividend",
    "Earnings",
    "Energy | Oil",
    "Financials",
    "Currencies",
    "General News | Opinion",
    "Gold | Metals | Materials",
    "IPO",
    "Legal | Regulation",
    "M&A | Investments",
    "Macro",
    "Markets",
    "Politics",
    "Personnel Change",
    "Stock Commentary",
    "Stock Movement",
)

# Same order as models.artifact.SENTIMENT_LABELS; kept here too so the corpus package stays importable
# without the models package on the path of a bare data-prep job.
SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
