"""RandGrow: AdaGrow's growth machinery with where-to-grow chosen without saliency.

`where: round_robin` is what the original RandGrow script does despite its name (stage g, g+1, ...
over stages below their max; units in module order); `where: random` draws stages and units from a
seeded RNG, saved in checkpoints.
"""
from growth.blocks import RepUnit
from growth.errors import ConfigError
from growth.methods.adagrow import AdaGrow

WHERE = ("round_robin", "random")


class RandGrow(AdaGrow):
    name = "randgrow"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self.where = cfg["method"].get("where", "round_robin")
        if self.where not in WHERE:
            raise ConfigError("method.where", self.where, f"allowed: {', '.join(WHERE)}")
        self.next_stage, self.next_unit = 0, 0

    @property
    def variants(self) -> dict:
        return {**super().variants, "where": self.where}

    def choose_stage(self, model):
        cands = [i for i, (d, m) in enumerate(zip(model.depths, self.max_arch)) if d < m]
        if self.where == "random":
            return self.rng.choice(cands), {}
        n = len(model.depths)
        stage = next(s % n for s in range(self.next_stage, self.next_stage + n) if s % n in cands)
        self.next_stage = stage + 1
        return stage, {}

    def choose_units(self, model):
        units = [(name, m) for name, m in model.named_modules() if isinstance(m, RepUnit)]
        n = int(self.ratio * len(units))
        if self.where == "random":
            picked = sorted(self.rng.sample(range(len(units)), n))
        else:
            picked = [(self.next_unit + i) % len(units) for i in range(n)]
            self.next_unit = (self.next_unit + n) % max(1, len(units))
        return [(units[i][0], units[i][1], 0.0) for i in picked]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "next_stage": self.next_stage, "next_unit": self.next_unit}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.next_stage, self.next_unit = state["next_stage"], state["next_unit"]
