// Runs once per `vitest run`: builds dist/ (e2e tests spawn bin/chatd) and reports which real
// services are reachable. With CI=true a missing service fails the run instead of skipping.
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
}
