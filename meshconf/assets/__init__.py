"""Setting up the data folder: where each model file lives and how to get it (`assets`), resumable verified
downloads (`download`), structural checks (`validate`), and the jobs `doctor`, `fetch` and `convert-smpl`."""
