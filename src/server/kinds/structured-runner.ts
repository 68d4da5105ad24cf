import type { JobKind } from './kind.js';
import { batched, checked, fanOutItems } from './shared.js';

/**
 * `structured_runner`: the project's runner over the payload, once or fanned out (`fan_out`:
 * `by`, `items`, `chunks`), `batch_size` items per task. No aggregate (the items are the results).
 */
export const structuredRunner: JobKind = {
  name: 'structured_runner',
  plan: (request, { batch, directives, command, batchField }) => checked(batched(fanOutItems(request), batch, directives, 'task', command, batchField)),
  aggregate: () => null,
};
