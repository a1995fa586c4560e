/**
 * The worker's states and the transitions between them:
 * created -> starting -> running -> (deprecated) -> stopping -> stopped.
 * A start that fails or is cancelled goes from starting to stopping/stopped.
 */
import { WorkerStateError } from "./errors.ts";

export type WorkerState =
  | "created"
  | "starting"
  | "running"
  | "deprecated"
  | "stopping"
  | "stopped";

const ALLOWED: Readonly<Record<WorkerState, readonly WorkerState[]>> = {
  created: ["starting", "stopped"],
  starting: ["running", "stopping", "stopped"],
  running: ["deprecated", "stopping"],
  deprecated: ["stopping"],
  stopping: ["stopped"],
  stopped: [],
};

export class Lifecycle {
  #state: WorkerState = "created";
  readonly #workerId: string;
  readonly #onChange: (from: WorkerState, to: WorkerState) => void;

  constructor(workerId: string, onChange: (from: WorkerState, to: WorkerState) => void = () => {}) {
    this.#workerId = workerId;
    this.#onChange = onChange;
  }

  get state(): WorkerState {
    return this.#state;
  }

  /** `true` when the current state is one of `states`. */
  is(...states: WorkerState[]): boolean {
    return states.includes(this.#state);
  }

  /** Moves to `to`; throws WorkerStateError when that transition is not allowed. */
  go(to: WorkerState): void {
    const from = this.#state;
    if (!ALLOWED[from].includes(to)) {
      throw new WorkerStateError(this.#workerId, from, to, ALLOWED[from]);
    }
    this.#state = to;
    this.#onChange(from, to);
  }
}
