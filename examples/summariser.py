"""A summariser: one moderate subtask on the balanced tier, capped at five cents."""

from paymaster import Agent, Budget


class Summariser(Agent):
    name = "summariser"
    instructions = "Summarise the user's text in two sentences. Keep every number exactly as written."
    budget = Budget(usd="0.05", steps=5)


AGENT = Summariser
INPUTS = [
    "Summarise: Our Q3 support volume rose 18% to 42,000 tickets. Median first response fell from 9 to 4 hours "
    "after we added a triage queue. Refund requests stayed flat at 3.1% of orders.",
    "Summarise: The migration to the new billing system finished on 14 October. Two customers were double "
    "charged; both were refunded within a day. No other incidents were reported.",
]
