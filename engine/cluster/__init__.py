"""Running the engine on a Ray cluster (`uprez serve --cluster`, `uprez upscale DIR --cluster`; docs/cluster.md).

Ray is an optional extra (`pip install 'uprez[cluster]'`): only the modules of this package import it, and only
the command line's `--cluster` paths and the server's cluster runner import them.

- `start.py`: Ray started locally or joined at an address; how many workers, and their resources.
- `worker.py`: `ModelWorker`, the Ray actor holding one loaded model: runs whole jobs, and tile batches for
  another worker's job.
- `spread.py`: one job's tile batches handed out over the workers, fused in the same order as on one.
- `runner.py`: the server's runner: a job to a free worker, its progress and cancel back and forth.
- `queue.py`: the server's job queue with one worker thread per Ray worker.
- `batch.py`: a folder batch spread over the workers.
"""
