"""RandGrow: AdaGrow's growth machinery with where-to-grow chosen without saliency.

`where: round_robin` is what the original RandGrow script does despite its name (stage g, g+1, ...
over stages below their max; units in module order); `where: random` draws stages and units from a
seeded RNG, saved in checkpoints.

Transformers (ViT, BERT) have one stack of layers: a new layer goes after an existing one, never by
saliency. `round_robin`: after layer 0 first, then after the layer that follows the previous new one,
wrapping to layer 0 past the end (the new layers spread evenly); `random`: after a layer drawn from the RNG.
"""
from growth.errors import ConfigError
from growth.methods.adagrow import AdaGrow, _site
from growth.methods.registry import register_method

WHERE = ("round_robin", "random")


@register_method("randgrow")
class RandGrow(AdaGrow):
    name = "randgrow"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self.where = cfg["method"].get("where", "round_robin")
        if self.where not in WHERE:
            raise ConfigError("method.where", self.where, f"allowed: {', '.join(WHERE)}")
        self.next_stage, self.next_unit, self.next_layer = 0, 0, 0

    @property
    def variants(self) -> dict:
        return {**super().variants, "where": self.where}

    def choose_stage(self, model):
        """(depth site, {}): a stage below its max, drawn or in turn."""
        cands = [site for site in model.depth_sites() if model.depths[site.index] < self.max_arch[site.index]]
        if self.where == "random":
            return self.rng.choice(cands), {}
        n = len(model.depths)
        stage = next(s % n for s in range(self.next_stage, self.next_stage + n) if s % n in
                     {site.index for site in cands})
        self.next_stage = stage + 1
        return _site(cands, stage), {}

    def insert_position(self, model):
        """(depth site, {}): the new layer goes in at the site's position, i.e. after layer position - 1."""
        positions = model.depth_sites()
        if model.depth == 0:
            return positions[0], {}
        if self.where == "random":
            return self.rng.choice(positions[1:]), {}  # after one of the layers (as randint(1, depth) draws)
        position = self.next_layer % model.depth + 1
        self.next_layer = position + 1  # the layer after the new one
        return _site(positions, position), {}

    def choose_units(self, model):
        """[(branch site, its RepUnit, 0.0)]: drawn, or the next ones in module order."""
        modules = dict(model.named_modules())
        units = [(site, modules[site.index]) for site in model.branch_sites()]
        n = self.units_per_event(len(units))
        if self.where == "random":
            picked = sorted(self.rng.sample(range(len(units)), n))
        else:
            picked = [(self.next_unit + i) % len(units) for i in range(n)]
            self.next_unit = (self.next_unit + n) % max(1, len(units))
        return [(units[i][0], units[i][1], 0.0) for i in picked]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "next_stage": self.next_stage, "next_unit": self.next_unit,
                "next_layer": self.next_layer}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.next_stage, self.next_unit = state["next_stage"], state["next_unit"]
        self.next_layer = state.get("next_layer", 0)  # checkpoints written before transformers had it
