import { z } from 'zod';
import { composeSchema } from './schema.js';

/**
 * The JSON Schema of holos.yaml, for editors (yaml-language-server). It describes what users
 * write (the schema's input side); `x-*` extension keys are allowed in every mapping, as in compose.
 */
export function composeJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(composeSchema, {
    io: 'input',
    unrepresentable: 'any',
    override: ({ jsonSchema }) => {
      if (jsonSchema.additionalProperties === false) jsonSchema.patternProperties = { '^x-': {} };
    },
  });
  return { ...schema, $id: 'https://holos.dev/schema/holos.schema.json', title: 'holos.yaml' };
}
