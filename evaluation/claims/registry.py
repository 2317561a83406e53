"""The ledger's claims in ledger order (:data:`ALL_CLAIMS`; :data:`CLAIMS` those that can run here) and
:func:`get_claim`; :mod:`evaluation.claims` exports them."""
from . import (apg, autoguidance, bradley_nakkiran, cfg_zero_star, cfgig, cfgpp, characteristic, chidambaram, interval,
               linear_cfg, paper_figure, pavasovic, reg_fields, reg_map, schedules, theorem1, three_stages, wu)
from . import flawed_schedules, split_component, ventura
from .ledger import Claim

ALL_CLAIMS = (reg_map.CLAIM, reg_fields.CLAIM, theorem1.CLAIM, paper_figure.CLAIM, bradley_nakkiran.CLAIM,
              interval.CLAIM, autoguidance.CLAIM, chidambaram.CLAIM, wu.CLAIM, cfgpp.CLAIM, cfgig.CLAIM, schedules.CLAIM,
              cfg_zero_star.CLAIM, apg.CLAIM, pavasovic.CLAIM)
ALL_CLAIMS += (characteristic.CLAIM, linear_cfg.CLAIM, three_stages.CLAIM)  # round 4 (issue 23, claims 13-18)
ALL_CLAIMS += (split_component.CLAIM, ventura.CLAIM, flawed_schedules.CLAIM)  # round 5 (issue 23, claims 13, 15, 17)
CLAIMS = tuple(c for c in ALL_CLAIMS if not c.unavailable())  # the paper figure needs the released networks


def get_claim(claim_id: str) -> Claim:
    """The claim called ``claim_id`` (``ValueError`` listing the ids otherwise)."""
    for c in CLAIMS:
        if c.id == claim_id:
            return c
    raise ValueError(f"unknown claim {claim_id!r}; choose one of {[c.id for c in CLAIMS]}")

