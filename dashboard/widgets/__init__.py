"""Page building blocks: member cards, parameter forms, the pre-flight panel, the draft's
replace/undo prompts, and a run's live view."""
