"""The tags doodl sets on MLflow runs and experiments: one place for every name."""

TAG_SWEEP, TAG_RUN, TAG_GROUP, TAG_ROLE, TAG_LOGGED = (
    "doodl.sweep_id",
    "doodl.run_id",
    "doodl.group_id",
    "doodl.role",
    "doodl.logged",
)
# a group's readable name (the values of the axes that vary), on its group run and its seeds'
# runs: "Group by" this tag in MLflow's runs table puts each group's seeds together
TAG_GROUP_LABEL = "doodl.group"

# MLflow 3's UI opens an experiment without a kind on its GenAI overview (empty trace charts);
# this kind makes it open on the runs
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# per analysis, the tag holding the settings a run's results were logged with is its registry
# entry's ``tag`` (doodl.NAME, doodl.analysis.registry); a failed group's error is doodl.NAME_error
# an audit run: its verdict, its baseline sweep and the spec it audited
TAG_VERDICT, TAG_BASELINE, TAG_SPEC = "doodl.audit_verdict", "doodl.audit_baseline", "doodl.spec_name"
