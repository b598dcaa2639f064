"""Many runs: the leaderboard, the selection rule, sweeps, the comparison page, MLflow tracking."""
