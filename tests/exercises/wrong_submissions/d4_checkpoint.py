"""Submissions of d4_checkpoint: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form)."""

SUBMISSIONS = {
    # Adam's moments m, v and its step t start again from zero after the restart
    "optimizer_state_lost": ([('    optimizer.load_state_dict(state["optimizer"])\n', "")],
                             "test_resume"),
    # the batches and dropout masks after the restart come from another generator state
    "rng_not_restored": ([('    torch.set_rng_state(state["rng"]["torch"])\n', "")],
                         "test_resume"),
    # straight to the final name: a crash mid-write leaves a truncated checkpoint
    "written_in_place": ([(("    tmp = path.with_name(path.name + \".tmp\")   # same folder: os.replace stays one rename\n"
                           "    with open(tmp, \"wb\") as f:\n"
                           "        torch.save(state, f)\n"
                           "        f.flush()\n"
                           "        os.fsync(f.fileno())\n"
                           "    os.replace(tmp, path)"),
                           "    torch.save(state, path)")], "test_atomic"),
    # hpclab's RNG helpers, a NamedTemporaryFile beside the target and Path.replace
    "equivalent": ([(("    state = {\"model\": model.state_dict(), \"optimizer\": optimizer.state_dict(), \"step\": step,\n"
                     "             \"rng\": {\"torch\": torch.get_rng_state(), \"numpy\": np.random.get_state(),\n"
                     "                     \"python\": random.getstate()}}\n"
                     "    tmp = path.with_name(path.name + \".tmp\")   # same folder: os.replace stays one rename\n"
                     "    with open(tmp, \"wb\") as f:\n"
                     "        torch.save(state, f)\n"
                     "        f.flush()\n"
                     "        os.fsync(f.fileno())\n"
                     "    os.replace(tmp, path)"),
                     ("    from hpclab.parallel import rng_state\n"
                     "    state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(),\n"
                     "                 step=step, rng=rng_state())\n"
                     "    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as f:\n"
                     "        torch.save(state, f)\n"
                     "        f.flush()\n"
                     "        os.fsync(f.fileno())\n"
                     "    Path(f.name).replace(path)")),
                    (("    torch.set_rng_state(state[\"rng\"][\"torch\"])\n"
                     "    np.random.set_state(state[\"rng\"][\"numpy\"])\n"
                     "    random.setstate(state[\"rng\"][\"python\"])\n"),
                     ("    from hpclab.parallel import set_rng_state\n"
                     "    set_rng_state(state[\"rng\"])\n"))], None),
}
