"""The queue side: fan-out of tasks to rq workers, the jobs, background runs, outbox and write-back, claims,
failures, projects' labeling contexts and live quality."""
