/** The one error type for a bad flow definition (thrown while building, never at run time). */
export class FlowDefinitionError extends Error {
  override name = "FlowDefinitionError";

  /** `step` is omitted for problems with the flow itself. */
  constructor(readonly flowSlug: string, readonly stepSlug: string | undefined, problem: string) {
    super(
      stepSlug === undefined
        ? `Flow "${flowSlug}": ${problem}`
        : `Flow "${flowSlug}", step "${stepSlug}": ${problem}`,
    );
  }
}
