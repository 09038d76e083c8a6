from expr3d.metrics import report


def test_run_penalty_names_the_side_and_reads_old_runs_as_generator():
    assert report.run_penalty({}) == "?"
    assert report.run_penalty({"depth_weight": 0.0, "confidence_penalty": 0.1}) == "no"
    assert report.run_penalty({"depth_weight": 0.1, "confidence_penalty": 0.0,
                               "confidence_penalty_on": "critic"}) == "no"
    assert report.run_penalty({"depth_weight": 0.1, "confidence_penalty": 0.1,
                               "confidence_penalty_on": "critic"}) == "yes (critic)"
    assert report.run_penalty({"depth_weight": 0.1, "confidence_penalty": 0.1,
                               "confidence_penalty_on": "generator"}) == "yes (generator)"
    # Runs trained before --confidence_penalty_on existed put the penalty in the generators' loss.
    assert report.run_penalty({"depth_weight": 0.1, "confidence_penalty": 0.1}) == "yes (generator)"
