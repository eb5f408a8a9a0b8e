import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants.js';
import type { INestApplication } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { IDEMPOTENT, type IdempotentOptions } from '../../src/idempotency/idempotent.decorator.js';
import { PUBLIC_ROUTE } from '../../src/merchants/public.decorator.js';

export interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
  components: Record<string, Record<string, unknown>>;
}
export interface Operation {
  parameters?: Array<{ $ref?: string; name?: string; in?: string; required?: boolean }>;
  responses: Record<
    string,
    {
      $ref?: string;
      content?: Record<string, { schema: unknown }>;
      headers?: Record<string, unknown>;
    }
  >;
}

export const openApiPath = path.resolve(import.meta.dirname, '../../openapi.yaml');

export function loadOpenApi(): OpenApiDocument {
  return parse(readFileSync(openApiPath, 'utf8')) as OpenApiDocument;
}

/** Follows one local `$ref` (`#/components/...`) in the document. */
export function deref<T>(doc: OpenApiDocument, value: T | { $ref?: string }): T {
  const ref = (value as { $ref?: string }).$ref;
  if (!ref) return value as T;
  return ref
    .slice(2)
    .split('/')
    .reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], doc) as T;
}

export interface RouteInfo {
  method: string;
  /** OpenAPI style: /accounts/{id}. */
  path: string;
  idempotent?: IdempotentOptions;
  isPublic: boolean;
}

/** Every route the running app serves, read from NestJS's own metadata. */
export function appRoutes(app: INestApplication): RouteInfo[] {
  const routes: RouteInfo[] = [];
  for (const module of app.get(ModulesContainer).values()) {
    for (const wrapper of module.controllers.values()) {
      const controller = wrapper.metatype as (new (...args: never[]) => unknown) | null;
      if (!controller) continue;
      const base = String(Reflect.getMetadata(PATH_METADATA, controller) ?? '');
      const proto = controller.prototype as Record<string, unknown>;
      for (const name of Object.getOwnPropertyNames(proto)) {
        const handler = proto[name];
        if (name === 'constructor' || typeof handler !== 'function') continue;
        const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
        if (method === undefined) continue;
        const sub = String(Reflect.getMetadata(PATH_METADATA, handler) ?? '');
        const full = `/${[base, sub].filter((p) => p && p !== '/').join('/')}`.replace(/\/+/g, '/');
        routes.push({
          method: RequestMethod[method].toLowerCase(),
          path: full.replace(/:(\w+)/g, '{$1}'),
          idempotent: Reflect.getMetadata(IDEMPOTENT, handler) as IdempotentOptions | undefined,
          isPublic:
            Reflect.getMetadata(PUBLIC_ROUTE, handler) === true ||
            Reflect.getMetadata(PUBLIC_ROUTE, controller) === true,
        });
      }
    }
  }
  return routes;
}

/** Validates response bodies against the schemas the document gives for (method, path, status). */
export class ResponseValidator {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });

  constructor(private readonly doc: OpenApiDocument) {
    addFormats.default(this.ajv);
    this.ajv.addSchema({ $id: 'openapi', ...doc, $schema: undefined });
  }

  /** Returns the schema errors (empty when the body matches), or throws if the spec lacks the response. */
  errors(
    method: string,
    path: string,
    status: number,
    contentType: string,
    body: unknown,
  ): string[] {
    const operation = this.doc.paths[path]?.[method];
    if (!operation) throw new Error(`openapi.yaml has no ${method.toUpperCase()} ${path}`);
    const response = operation.responses[String(status)];
    if (!response)
      throw new Error(`openapi.yaml has no ${status} for ${method.toUpperCase()} ${path}`);
    const mediaType = contentType.split(';')[0].trim();
    const resolved = deref(this.doc, response);
    if (!resolved.content) {
      // A response documented without a body (204, 304) must come without one.
      const empty =
        body === '' || body === undefined || (isObject(body) && !Object.keys(body).length);
      return empty ? [] : [`a body where ${status} documents none`];
    }
    if (!resolved.content[mediaType]) {
      throw new Error(
        `openapi.yaml has no ${mediaType} body for ${status} of ${method.toUpperCase()} ${path}`,
      );
    }
    const pointer = response.$ref
      ? `${response.$ref}/content/${escape(mediaType)}/schema`
      : `#/paths/${escape(path)}/${method}/responses/${status}/content/${escape(mediaType)}/schema`;
    const validate = this.ajv.getSchema(`openapi${pointer}`);
    if (!validate) throw new Error(`cannot compile ${pointer}`);
    return validate(body)
      ? []
      : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function escape(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * Checks every response an e2e test receives against openapi.yaml: its status is
 * documented for the route, its body matches the documented schema, and errors
 * are problem+json. Paths the document does not know (an unknown route) are
 * only checked for being problem+json.
 */
export class ContractChecker {
  private readonly validator: ResponseValidator;
  private readonly templates: Array<{ template: string; pattern: RegExp; literals: number }>;

  constructor(private readonly doc: OpenApiDocument = loadOpenApi()) {
    this.validator = new ResponseValidator(doc);
    this.templates = Object.keys(doc.paths).map((template) => ({
      template,
      pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+').replace(/\./g, '\\.')}$`),
      literals: template.split('/').filter((s) => s && !s.startsWith('{')).length,
    }));
  }

  /** The documented path template a concrete path falls under, the most literal one first. */
  template(path: string): string | undefined {
    return this.templates
      .filter((t) => t.pattern.test(path))
      .sort((a, b) => b.literals - a.literals)[0]?.template;
  }

  check(method: string, url: string, status: number, contentType: string, body: unknown): void {
    const path = url.split('?')[0];
    const template = this.template(path);
    const problem = status >= 400 && /^application\/problem\+json/.test(contentType);
    if (status >= 400 && !problem) {
      throw new Error(`${method.toUpperCase()} ${url} answered ${status} without problem+json`);
    }
    if (!template || !this.doc.paths[template][method]) return;
    const errors = this.validator.errors(method, template, status, contentType, body);
    if (errors.length > 0) {
      throw new Error(
        `${method.toUpperCase()} ${url} ${status} does not match openapi.yaml: ${errors.join('; ')}`,
      );
    }
  }
}
