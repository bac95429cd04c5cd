"""Submissions of d2_topk_ef: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form)."""

SUBMISSIONS = {
    # the residual is computed but never added back: plain top-k under another name
    "residual_dropped": ([(
        "        v = g.clone() if self.residual is None else g + self.residual",
        "        v = g.clone()")], "test_error_feedback"),
    "residual_wrong_sign": ([("        self.residual = v - sent",
                              "        self.residual = sent - v")], "test_error_feedback"),
    "keeps_smallest": ([("    keep = v.abs().topk(k).indices",
                         "    keep = v.abs().topk(k, largest=False).indices")], "test_topk"),
    # a mask from a sort instead of topk, the residual kept as a running sum
    "equivalent": ([(("    keep = v.abs().topk(k).indices\n"
                     "    out = torch.zeros_like(v)\n"
                     "    out[keep] = v[keep]\n"
                     "    return out"),
                     ("    order = torch.argsort(v.abs(), descending=True)\n"
                     "    mask = torch.zeros(v.numel(), dtype=torch.bool)\n"
                     "    mask[order[:k]] = True\n"
                     "    return torch.where(mask, v, torch.zeros_like(v))")),
                    (("        v = g.clone() if self.residual is None else g + self.residual\n"
                     "        sent = topk_compress(v, self.ratio)\n"
                     "        self.residual = v - sent\n"
                     "        return sent"),
                     ("        if self.residual is None:\n"
                     "            self.residual = torch.zeros_like(g)\n"
                     "        corrected = self.residual.add(g)\n"
                     "        out = topk_compress(corrected, self.ratio)\n"
                     "        self.residual = corrected.sub(out)\n"
                     "        return out"))], None),
}
