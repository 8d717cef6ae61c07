# Renders a BOSH job's templates the way the director and `bosh create-env` do, with only
# Ruby's standard library (erb, json, yaml), so release tests need no bosh CLI or gems.
#
#   ruby test/helpers/render-erb.rb JOB_DIR CONTEXT_JSON OUT_DIR
#
# CONTEXT_JSON: {"properties": {...manifest properties...}, "spec": {...optional...}}.
# Writes each template to OUT_DIR/<destination> (bin/* executable) and prints
# {"rendered": [destinations], "lookups": [every property name p/if_p asked for]}. A failing template prints
# "<template>: <ErrorClass>: <message>" on stderr and exits 1.
#
# Modelled on cloudfoundry/bosh-template (EvaluationContext, PropertyHelper):
# - only properties the job spec declares are visible, spec defaults fill the gaps,
#   and a null in the manifest counts as unset;
# - p(name|[names], default) raises UnknownProperty when nothing is found;
# - if_p(*names) { |*values| } runs when all are set and returns an object with
#   else / else_if_p;
# - `spec` and `properties` answer method calls for hash keys (spec.job.name, ...).
require 'erb'
require 'json'
require 'yaml'

module RenderErb
  class UnknownProperty < StandardError
    def initialize(names)
      super("Can't find property '#{names.inspect}'")
    end
  end

  # OpenStruct-like read-only view of a nested hash.
  class Struct
    def initialize(hash)
      @hash = hash
    end

    def [](key)
      wrap(@hash[key.to_s])
    end

    def to_h
      @hash
    end

    def method_missing(name, *args)
      key = name.to_s
      return super unless args.empty? && !key.end_with?('=')

      wrap(@hash[key])
    end

    def respond_to_missing?(_name, _include_private = false)
      true
    end

    private

    def wrap(value)
      value.is_a?(Hash) ? Struct.new(value) : value
    end
  end

  class ActiveElseBlock
    def initialize(context)
      @context = context
    end

    def else
      yield
    end

    def else_if_p(*names, &block)
      @context.if_p(*names, &block)
    end
  end

  class InactiveElseBlock
    def else; end

    def else_if_p(*_names)
      InactiveElseBlock.new
    end
  end

  def self.lookup(hash, name)
    name.to_s.split('.').reduce(hash) do |node, key|
      return nil unless node.is_a?(Hash)

      node[key]
    end
  end

  def self.assign(hash, name, value)
    keys = name.split('.')
    last = keys.pop
    node = keys.reduce(hash) { |h, key| h[key] = h[key].is_a?(Hash) ? h[key] : {} }
    node[last] = value
  end

  # The director's "bind properties": spec-declared names only, manifest value or default.
  def self.bind_properties(spec_properties, manifest_properties)
    bound = {}
    (spec_properties || {}).each do |name, definition|
      value = lookup(manifest_properties || {}, name)
      value = (definition || {})['default'] if value.nil?
      assign(bound, name, value)
    end
    bound
  end

  class EvaluationContext
    attr_reader :spec, :properties, :raw_properties, :name, :index, :lookups

    def initialize(raw_properties, spec_hash, lookups = [])
      @lookups = lookups
      @raw_properties = raw_properties
      @properties = Struct.new(raw_properties)
      @spec = Struct.new(spec_hash.merge('properties' => raw_properties))
      @name = spec_hash['name']
      @index = spec_hash['index']
    end

    def get_binding
      binding
    end

    def p(*args)
      names = Array(args[0])
      @lookups.concat(names.map(&:to_s))
      names.each do |name|
        value = RenderErb.lookup(@raw_properties, name)
        return value unless value.nil?
      end
      return args[1] if args.length == 2

      raise UnknownProperty, names
    end

    def if_p(*names)
      @lookups.concat(names.map(&:to_s))
      values = names.map do |name|
        value = RenderErb.lookup(@raw_properties, name)
        return ActiveElseBlock.new(self) if value.nil?

        value
      end
      yield(*values)
      InactiveElseBlock.new
    end

    def if_link(_name)
      ActiveElseBlock.new(self)
    end

    def link(name)
      raise "link '#{name}' is not available in this renderer"
    end
  end

  def self.mkdir_p(dir)
    return if Dir.exist?(dir)

    mkdir_p(File.dirname(dir))
    Dir.mkdir(dir)
  end

  def self.render_job(job_dir, context, out_dir)
    job_spec = YAML.safe_load(File.read(File.join(job_dir, 'spec')))
    raw = bind_properties(job_spec['properties'], context['properties'])
    spec_hash = {
      'name' => job_spec['name'],
      'job' => { 'name' => job_spec['name'] },
      'deployment' => 'bosh',
      'index' => 0,
      'id' => 'e2b6c7a4-0000-4000-8000-000000000000',
      'az' => 'z1',
      'bootstrap' => true,
      'address' => '10.0.0.6',
      'ip' => '10.0.0.6',
      'networks' => {},
    }.merge(context['spec'] || {})

    rendered = []
    lookups = []
    (job_spec['templates'] || {}).each do |source, destination|
      template = File.read(File.join(job_dir, 'templates', source))
      evaluation = EvaluationContext.new(raw, spec_hash, lookups)
      begin
        output = ERB.new(template, trim_mode: '-').result(evaluation.get_binding)
      rescue StandardError => e
        warn "#{source}: #{e.class.name.split('::').last}: #{e.message}"
        exit 1
      end
      path = File.join(out_dir, destination)
      mkdir_p(File.dirname(path))
      File.write(path, output)
      File.chmod(destination.start_with?('bin/') ? 0o755 : 0o644, path)
      rendered << destination
    end
    { 'rendered' => rendered, 'lookups' => lookups.uniq.sort }
  end
end

if $PROGRAM_NAME == __FILE__
  if ARGV.length != 3
    warn 'usage: render-erb.rb JOB_DIR CONTEXT_JSON OUT_DIR'
    exit 2
  end
  job_dir, context_path, out_dir = ARGV
  context = JSON.parse(File.read(context_path))
  puts JSON.dump(RenderErb.render_job(job_dir, context, out_dir))
end
